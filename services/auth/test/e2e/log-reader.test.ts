/**
 * An instance whose stdout's reader stalls, comes back, then goes away, as a
 * container's log driver or journald can: the server's stdout is a pipe this
 * test stops reading, reads again, then closes. While nobody reads, every
 * process keeps at most TESSERA_LOG_BUFFER_KB of lines and drops the rest,
 * counted in tessera_log_lines_dropped_total, and keeps answering; once the
 * reader is back, a line says how many were dropped; once it is gone (EPIPE),
 * the instance serves on with the same processes. A small buffer (64 KiB,
 * the least the setting takes) fills in a few hundred requests.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createTestDatabase } from '../helpers/db.js'
import { loginOver, refreshOver, signUpOver, within } from '../helpers/http.js'
import { instancePids, SERVER_ENTRY } from '../helpers/server.js'

/** Every wait here, as the other waits on a spawned server. */
const WAIT_MS = 15_000

async function healthy (base: string): Promise<boolean> {
  const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) })
  await res.arrayBuffer()
  return res.status === 200
}

/** The instance's tessera_log_lines_dropped_total (undefined when the scrape has none). */
async function droppedLines (base: string): Promise<number | undefined> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
  const value = /^tessera_log_lines_dropped_total (\S+)$/m.exec(text)?.[1]
  return value === undefined ? undefined : Number(value)
}

t.test('a stalled stdout drops and counts lines while the instance answers; a closed one leaves it serving', async (t) => {
  const env = {
    PATH: process.env.PATH ?? '',
    DATABASE_URL: await createTestDatabase(t),
    TESSERA_KEK: randomBytes(32).toString('base64url'),
    PORT: '0',
    LOG_LEVEL: 'info',
    TESSERA_WORKERS: '1',
    TESSERA_LOG_BUFFER_KB: '64',
    TESSERA_RATE_LIMIT: '1000000',
    TESSERA_MAX_EVENT_LOOP_DELAY_MS: '0'
  }
  const server = spawn(process.execPath, [SERVER_ENTRY], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { server.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  const read = (chunk: Buffer): void => { stdout += chunk.toString() }
  server.stdout.on('data', read)
  server.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const serving = await within(60_000, async () => /"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/.test(stdout) || server.exitCode !== null)
  const base = /"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/.exec(stdout)?.[1]
  if (serving === undefined || base === undefined) throw new Error(`the server did not start:\n${stdout}\n${stderr}`)
  await signUpOver(base, 'lena', 'correct horse battery')
  const { refresh_token: refreshToken } = await loginOver(base, 'lena', 'correct horse battery')
  const processes = instancePids(server.pid ?? 0).sort((a, b) => a - b)

  // The reader stalls: nothing more is read, the pipe fills, then the buffer.
  server.stdout.off('data', read)
  server.stdout.pause()
  const dropping = await within(WAIT_MS, async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, async () => await healthy(base)))
    if (!answers.every(Boolean)) t.fail('a /healthz went unanswered while stdout was not read')
    return ((await droppedLines(base)) ?? 0) > 0
  })
  t.not(dropping, undefined, `tessera_log_lines_dropped_total goes above 0 (now ${String(await droppedLines(base))})`)
  t.ok(await healthy(base), '/healthz is answered while stdout is not read')
  const refreshed = await refreshOver(base, refreshToken)
  t.equal(refreshed.status, 200, 'a refresh is answered while stdout is not read')
  const login = await loginOver(base, 'lena', 'correct horse battery')
  t.type(login.access_token, 'string', 'a login is answered while stdout is not read')

  // The reader is back: what waited is written, then a line says how many were dropped.
  server.stdout.on('data', read)
  server.stdout.resume()
  const said = await within(WAIT_MS, async () => {
    await healthy(base)
    return /"dropped_lines":[1-9][0-9]*.*"msg":"[0-9]+ log lines were dropped/.test(stdout)
  })
  t.not(said, undefined, 'once the reader is back, a line says how many lines were dropped')

  // The reader goes away: the next write fails with EPIPE.
  server.stdout.destroy()
  for (let round = 0; round < 10; round++) {
    const answers = await Promise.all(Array.from({ length: 20 }, async () => await healthy(base)))
    if (!answers.every(Boolean)) t.fail(`a /healthz went unanswered after stdout closed (round ${round})`)
  }
  t.ok(await healthy(base), '/healthz is answered after stdout closed')
  const again = await refreshOver(base, login.refresh_token)
  t.equal(again.status, 200, 'a refresh is answered after stdout closed')
  t.type((await loginOver(base, 'lena', 'correct horse battery')).access_token, 'string', 'a login is answered after stdout closed')
  t.equal(server.exitCode, null, 'the instance is still running')
  t.same(instancePids(server.pid ?? 0).sort((a, b) => a - b), processes, 'by the same processes: none died on EPIPE and was replaced')
})
