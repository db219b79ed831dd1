/**
 * The hashing process (dist/passwords/hashing-process.js), as the primary
 * forks it: a request it fails is logged as every other process logs, one
 * JSON line at error, not raw text in the middle of the JSON log; and it
 * holds none of the instance's secrets in its environment.
 */
import t from 'tap'
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { HashingSettings } from '../../src/passwords/hashing-engine.js'
import { createTestDatabase } from '../helpers/db.js'
import { loginOver, signUpOver } from '../helpers/http.js'
import { hashingSettingsOf, startServer } from '../helpers/server.js'

const ENTRY = fileURLToPath(new URL('../../dist/passwords/hashing-process.js', import.meta.url))

t.test('a failed request is one JSON log line at error, and answered as failed', async (t) => {
  // Its settings as the primary passes them (passwords/hashing-engine.ts), without a socket for workers: the primary's IPC alone.
  const settings: HashingSettings = { concurrency: 1, depth: 1, nice: 0, workers: 1, shareAnnounceIntervalMs: 1000, logLevel: 'info' }
  const child = fork(ENTRY, [JSON.stringify(settings)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'json' })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const messages: unknown[] = []
  const next = async (matches: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => await new Promise((resolve) => {
    const seen = messages.find((m) => matches(m as Record<string, unknown>))
    if (seen !== undefined) { resolve(seen as Record<string, unknown>); return }
    const listen = (message: unknown): void => {
      if (!matches(message as Record<string, unknown>)) return
      child.off('message', listen)
      resolve(message as Record<string, unknown>)
    }
    child.on('message', listen)
  })
  child.on('message', (message) => { messages.push(message) })
  await next((m) => m.tessera === 'notice' && m.kind === 'ready')
  child.send({ tessera: 'ask', id: 1, kind: 'no-such-kind', body: null })
  t.match(await next((m) => m.tessera === 'answer' && m.id === 1), { refused: 'failed' })
  for (let waited = 0; !output.includes('\n') && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20))
  const lines = output.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(JSON.parse(lines[0] ?? '{}'), { level: 50, msg: 'a request to the hashing process failed', kind: 'no-such-kind', err: { message: 'no handler for no-such-kind' } })
})

t.test('the hashing process the primary forks gets from the environment how Node runs, not the instance\'s settings or secrets', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_HASH_CONCURRENCY: '2', TESSERA_RATE_LIMIT: '1000000', MALLOC_ARENA_MAX: '2' })
  const started = server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string, hashing_pid?: number }).find((l) => l.msg === 'hashing process started')
  const pid = started?.hashing_pid ?? 0
  // /proc/PID/stat: the parent's pid is the 2nd field after the ")" that ends the command name.
  t.equal(Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]), server.process.pid, 'the primary\'s child')
  const env = new Map(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((v) => v !== '').map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)]))
  t.notOk(env.has('DATABASE_URL'), 'no DATABASE_URL')
  t.same([...env.keys()].filter((name) => name.startsWith('TESSERA_')), [], 'no TESSERA_ setting: not the KEK, nor any other')
  t.equal(env.get('UV_THREADPOOL_SIZE'), '2', 'one libuv pool thread per hashing slot')
  t.equal(env.get('MALLOC_ARENA_MAX'), '2', 'how the C library allocates is passed on')
  // Node adds NODE_CHANNEL_* for the IPC channel; under tap, NODE_OPTIONS loads its coverage hook, which adds its own _TAPJS_ variables to what a process it runs in forks.
  const allowed = ['UV_THREADPOOL_SIZE', 'NODE_OPTIONS', 'NODE_V8_COVERAGE', 'OPENSSL_CONF', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'MALLOC_ARENA_MAX', 'GLIBC_TUNABLES', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE']
  t.same([...env.keys()].filter((name) => !allowed.includes(name) && !name.startsWith('_TAPJS_PROCESSINFO_')), [], 'nothing else: not even PATH')
  await signUpOver(server.url, 'ada', 'correct horse battery')
  t.ok((await loginOver(server.url, 'ada', 'correct horse battery')).access_token, 'and logins hash and verify there')

  // Its settings are its one argument (passwords/hashing-engine.ts): the workers reach it at socketPath.
  const settings = hashingSettingsOf(pid)
  const socketDir = path.dirname(settings.socketPath ?? '/nowhere/at/all')
  const dir = statSync(socketDir)
  t.equal(dir.mode & 0o777, 0o700, 'the workers\' socket lies in a directory of the instance\'s user alone')
  t.equal(dir.uid, process.getuid?.())
  t.ok(statSync(settings.socketPath ?? '').isSocket(), 'a Unix socket')
  await server.stop()
  t.notOk(existsSync(socketDir), 'removed when the instance stops')
})

t.test('the workers\' socket goes under /tmp when TMPDIR cannot hold it: a directory that does not exist, or one too deep for a socket\'s path', async (t) => {
  const deep = mkdtempSync(path.join(tmpdir(), `tessera-${'deep-'.repeat(16)}`))
  t.teardown(() => { rmSync(deep, { recursive: true, force: true }) })
  for (const tmp of ['/nonexistent-tmpdir', deep]) {
    const server = await startServer(t, { DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_RATE_LIMIT: '1000000', TMPDIR: tmp })
    const pid = Number(/"hashing_pid":(\d+)/.exec(server.output())?.[1])
    const settings = hashingSettingsOf(pid)
    t.match(settings.socketPath, /^\/tmp\/tessera-hashing-[^/]+\/hashing\.sock$/, `TMPDIR=${tmp}`)
    await signUpOver(server.url, 'ada', 'correct horse battery')
    t.ok((await loginOver(server.url, 'ada', 'correct horse battery')).access_token, 'and logins hash there')
    await server.stop()
  }
})
