#!/usr/bin/env node
// The operator CLI. It runs the compiled service: `npm run build` (or `make build`) first.
// Plain JavaScript that any Node parses: the version check below must run
// before the service's modules, which an older Node cannot even load.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const entry = new URL('../dist/cli/main.js', import.meta.url)
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('tessera: not built yet; run `make build` (or `npm run build`) first\n')
  process.exit(1)
}

/**
 * The major version the service needs (.nvmrc, 24, as the engines field
 * says), or undefined outside a checkout: an image ships only its own Node.
 */
function requiredMajor () {
  try {
    return Number(readFileSync(new URL('../../../.nvmrc', import.meta.url), 'utf8').trim())
  } catch {
    return undefined
  }
}

/**
 * The checkout's own Node when this one is older than it needs: `make`
 * fetches it into .tools/ where the machine's node is older, and every make
 * target runs with it, but `npm run tessera` (how the docs give each
 * command) runs whatever `node` comes first on PATH. Without this, an older
 * Node failed on the first import with a stack trace naming node:tls.
 */
async function onCheckoutRuntime (needed) {
  const runtime = fileURLToPath(new URL('../../../.tools/node/node_modules/.bin/node', import.meta.url))
  // This may already be that Node, older than a newer .nvmrc: running it again would never end.
  if (!existsSync(runtime) || realpathSync(runtime) === realpathSync(process.execPath)) {
    process.stderr.write(`tessera: needs Node.js ${needed} or newer, and this is node ${process.version}: ` +
      `\`make build\` fetches Node.js ${needed} into .tools/ for this checkout (then \`npm run tessera\` uses it), or install Node.js ${needed}\n`)
    return 1
  }
  const child = spawn(runtime, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
  // A terminal's Ctrl-C reaches both processes; a signal sent to this one alone is passed on. Either way the child decides how it ends.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  const [code, signal] = await new Promise((resolve) => {
    child.on('exit', (...ended) => resolve(ended))
    child.on('error', (err) => {
      process.stderr.write(`tessera: cannot run ${runtime}: ${err.message}\n`)
      resolve([1, null])
    })
  })
  if (signal !== null) {
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  }
  return code ?? 1
}

const needed = requiredMajor()
if (needed !== undefined && Number(process.versions.node.split('.')[0]) < needed) {
  process.exitCode = await onCheckoutRuntime(needed)
} else {
  await import(entry.href)
}
