/**
 * The CLI started by a Node older than the checkout's (.nvmrc): `npm run
 * tessera` runs whatever `node` comes first on PATH, and `make` fetched the
 * one the service needs into .tools/ only for its own targets. The CLI then
 * runs itself on the checkout's Node, or says in one line what to do.
 */
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runProcess } from '@tessera/testkit'
import { CLI_ENTRY } from '../helpers/server.js'

const CHECKOUT = fileURLToPath(new URL('../../../../', import.meta.url))
const NEEDED = Number(readFileSync(path.join(CHECKOUT, '.nvmrc'), 'utf8').trim())
const VERSION = (JSON.parse(readFileSync(path.join(CHECKOUT, 'services/auth/package.json'), 'utf8')) as { version: string }).version

/** The machine's own Node when it is older than the checkout's (Debian's, on these machines), else why there is none. */
function olderNode (): { node: string, skip: false } | { node: '', skip: string } {
  for (const node of ['/usr/bin/node', '/usr/local/bin/node']) {
    const major = Number(spawnSync(node, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).stdout?.trim())
    if (major > 0 && major < NEEDED) return { node, skip: false }
  }
  return { node: '', skip: `no Node older than ${NEEDED} at /usr/bin or /usr/local/bin: the path under test is never taken here` }
}

const older = olderNode()

/** A copy of bin/tessera.js in a tree of its own, with a stand-in for the compiled CLI that prints which Node ran it. */
function treeWithCli (t: Test, options: { nvmrc: boolean | number }): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tessera-cli-runtime-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(path.join(root, 'services/auth/bin'), { recursive: true })
  mkdirSync(path.join(root, 'services/auth/dist/cli'), { recursive: true })
  cpSync(CLI_ENTRY, path.join(root, 'services/auth/bin/tessera.js'))
  writeFileSync(path.join(root, 'services/auth/dist/cli/main.js'), 'process.stdout.write("ran on " + process.version + "\\n")\n')
  if (options.nvmrc !== false) writeFileSync(path.join(root, '.nvmrc'), `${options.nvmrc === true ? NEEDED : options.nvmrc}\n`)
  return path.join(root, 'services/auth/bin/tessera.js')
}

t.test('an older Node runs the CLI on the checkout\'s Node from .tools/, arguments and exit codes passed through', { skip: older.skip }, async (t) => {
  t.ok(existsSync(path.join(CHECKOUT, '.tools/node/node_modules/.bin/node')), 'make fetched the checkout\'s Node, as it does wherever the machine\'s is older')
  const version = await runProcess(older.node, [CLI_ENTRY, '--version'], { env: { PATH: process.env.PATH ?? '' } })
  t.same(version, { code: 0, stdout: `tessera ${VERSION}\n`, stderr: '' }, 'the version, from the compiled CLI')
  const usage = await runProcess(older.node, [CLI_ENTRY, 'no-such-command'], { env: { PATH: process.env.PATH ?? '' } })
  t.equal(usage.code, 2, 'a usage error keeps its exit code')
  t.match(usage.stderr, /^tessera: unknown command "no-such-command"/, 'and its one line')
  t.notMatch(usage.stderr, /SyntaxError|node:tls/, 'no stack from the older Node')
})

t.test('an older Node without the checkout\'s Node says what to do, in one line and no stack', { skip: older.skip }, async (t) => {
  const cli = treeWithCli(t, { nvmrc: true })
  const result = await runProcess(older.node, [cli, '--version'], { env: { PATH: process.env.PATH ?? '' } })
  t.equal(result.code, 1)
  t.equal(result.stdout, '', 'the CLI itself never ran')
  t.match(result.stderr, new RegExp(`^tessera: needs Node.js ${NEEDED} or newer, and this is node v\\d+\\.\\d+\\.\\d+: \`make build\` fetches Node.js ${NEEDED} into .tools/`))
  t.equal(result.stderr.split('\n').length, 2, 'one line')
})

t.test('outside a checkout (no .nvmrc, as in the image) the CLI runs on the Node it was started with', async (t) => {
  const cli = treeWithCli(t, { nvmrc: false })
  const current = await runProcess(process.execPath, [cli], { env: { PATH: process.env.PATH ?? '' } })
  t.same(current, { code: 0, stdout: `ran on ${process.version}\n`, stderr: '' })
  const inCheckout = await runProcess(process.execPath, [treeWithCli(t, { nvmrc: true })], { env: { PATH: process.env.PATH ?? '' } })
  t.same(inCheckout, { code: 0, stdout: `ran on ${process.version}\n`, stderr: '' }, 'and in a checkout, on a Node new enough')
})

t.test('a checkout whose own Node is older than its .nvmrc says so, instead of running itself again without end', async (t) => {
  const cli = treeWithCli(t, { nvmrc: 999 })
  const tools = path.join(cli, '../../../../.tools/node/node_modules/.bin')
  mkdirSync(tools, { recursive: true })
  symlinkSync(process.execPath, path.join(tools, 'node'))
  const result = await runProcess(process.execPath, [cli, '--version'], { env: { PATH: process.env.PATH ?? '' } })
  t.equal(result.code, 1)
  t.equal(result.stdout, '')
  t.match(result.stderr, /^tessera: needs Node\.js 999 or newer, and this is node v/)
})
