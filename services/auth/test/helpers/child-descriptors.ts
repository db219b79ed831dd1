/**
 * For a child process's source (`node -e`) under `prlimit --nofile`: takes
 * every descriptor it can, holds them `ms`, gives them back; `code` is then
 * the error that stopped it (EMFILE) and `held` how many it took. Needs
 * `closeSync` and `openSync` from node:fs imported by the script.
 */
export function holdEveryDescriptor (ms: number): string {
  return `
const held = []
let code
try { for (;;) held.push(openSync('/dev/null', 'r')) } catch (err) { code = err.code }
await new Promise((resolve) => setTimeout(resolve, ${ms}))
for (const fd of held) closeSync(fd)
`
}
