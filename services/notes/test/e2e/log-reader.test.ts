/**
 * notes (the compiled server, its own process) whose stdout's reader
 * stalls, comes back, then goes away, as a container's log driver or
 * journald can: its stdout is a pipe this test stops reading, reads again,
 * then closes. While nobody reads, notes keeps at most NOTES_LOG_BUFFER_KB
 * of lines, drops the rest and keeps answering; once the reader is back, a
 * line says how many were dropped; once it is gone (EPIPE), notes serves on,
 * the same process. The least buffer the setting takes (64 KiB) fills in a
 * few hundred requests; the tokens are a real Tessera's.
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { request, spawnProcess } from '@tessera/testkit'
import { createTestDatabase, json, registerClient, startTessera } from '../helpers.js'

const SERVER = fileURLToPath(new URL('../../dist/server.js', import.meta.url))
const PASSWORD = 'correct horse battery'
/** Every wait on the spawned notes. */
const WAIT_MS = 15_000
/**
 * Requests sent while nobody reads, one line each (~200 bytes): ~600 KB of
 * lines, several times what the pipe (64 KiB on Linux), this side's stream
 * buffer (64 KiB) and notes' 64 KiB hold, so some are dropped for certain.
 */
const STALLED_ROUNDS = 60
const PER_ROUND = 50

t.test('a stalled stdout drops lines while notes answers, says so once read again; a closed one leaves it serving', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const tessera = await startTessera(t, { DATABASE_URL: databaseUrl })
  await registerClient(databaseUrl, ['notes-web', '--grants', 'password', '--scopes', 'notes:read notes:write', '--resources', 'urn:tessera:notes'])
  t.equal((await json(`${tessera.url}/v1/users`, { method: 'POST', body: JSON.stringify({ username: 'lena', password: PASSWORD }) })).status, 201, 'a user signs up')
  const login = await json(`${tessera.url}/oauth/token`, { method: 'POST', body: JSON.stringify({ grant_type: 'password', username: 'lena', password: PASSWORD, client_id: 'notes-web', resource: 'urn:tessera:notes' }) })
  t.equal(login.status, 200, 'and gets a token for notes')
  const bearer = { authorization: `Bearer ${String(login.body.access_token)}` }

  const notes = spawnProcess(process.execPath, [SERVER], {
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      NOTES_JWKS_URL: `${tessera.url}/.well-known/jwks.json`,
      LOG_LEVEL: 'info',
      NOTES_LOG_BUFFER_KB: '64'
    }
  })
  t.teardown(async () => { await notes.stop('SIGKILL') })
  const [, base = ''] = await notes.waitFor(/"address":"(http:\/\/[^"]+)".*"msg":"notes is serving"/, 60_000, 'notes')
  const noteList = async (): Promise<number> => (await request(`${base}/notes`, { headers: bearer, timeoutMs: 5000 })).status
  const healthz = async (): Promise<number> => (await request(`${base}/healthz`, { timeoutMs: 5000 })).status
  const created = await request(`${base}/notes`, { method: 'POST', headers: bearer, body: { text: 'buy milk' }, timeoutMs: 5000 })
  t.equal(created.status, 201, 'a note is created while stdout is read')
  /** Every answer of a round of GET /notes and /healthz at once: each 200, or the round's statuses. */
  const round = async (): Promise<number[]> =>
    await Promise.all(Array.from({ length: PER_ROUND }, async (_, i) => await (i % 2 === 0 ? noteList() : healthz())))

  // The reader stalls: nothing more is read, the pipe fills, then notes' buffer.
  notes.child.stdout?.pause()
  for (let i = 0; i < STALLED_ROUNDS; i++) {
    const statuses = await round()
    if (!statuses.every((status) => status === 200)) t.fail(`round ${i} while stdout was not read answered ${statuses.join(' ')}`)
  }
  t.equal(await noteList(), 200, 'GET /notes with a valid token is answered while stdout is not read')
  t.equal(await healthz(), 200, '/healthz is answered while stdout is not read')

  // The reader is back: what waited is written, then one line says how many were dropped.
  notes.child.stdout?.resume()
  const said = await notes.waitFor(/"dropped_lines":([1-9][0-9]*).*"msg":"[0-9]+ log lines were dropped: stdout was not read while 64 KiB of lines waited/, WAIT_MS, 'the dropped-lines line')
    .catch(() => undefined)
  t.ok(said, `once the reader is back, a line says how many lines were dropped (${said?.[1] ?? 'none'})`)

  // The reader goes away: notes' next write fails with EPIPE.
  notes.child.stdout?.destroy()
  for (let i = 0; i < 10; i++) {
    const statuses = await round()
    if (!statuses.every((status) => status === 200)) t.fail(`round ${i} after stdout closed answered ${statuses.join(' ')}`)
  }
  t.equal(await noteList(), 200, 'GET /notes with a valid token is answered after stdout closed')
  t.equal(await healthz(), 200, '/healthz is answered after stdout closed')
  t.ok(notes.child.exitCode === null && notes.child.signalCode === null, 'notes, one process, is still running: EPIPE ended neither it nor its answers')
})
