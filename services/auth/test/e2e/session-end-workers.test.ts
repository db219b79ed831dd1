/**
 * An ended session is refused at once by every HTTP worker of every instance
 * on Tessera's own routes (docs/decisions.md, "Access tokens are
 * self-contained"; integrators.md, "A logout reaches you when the token
 * expires"), however it ended and wherever. Each worker keeps things in
 * memory: the access tokens it verified (tokens/verify-access.ts), the client
 * rows it read (clients/cache.ts), its keyring; none may stand in for the
 * session read. Here two instances of two workers share one database; every
 * worker of both has verified (so remembers) a session's token before it is
 * ended through one of them, or by the CLI, and each is then asked right
 * after the ending answered, on fresh connections, until both workers of
 * each instance have answered (each request's log line names its pid).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { request } from '@tessera/testkit'
import { createTestDatabase } from '../helpers/db.js'
import { requestLineOf, runCli, startServer, type RunningServer } from '../helpers/server.js'
import { sleep } from '../helpers/http.js'

const PASSWORD = 'correct horse battery staple'
/** Fresh connections tried per instance before giving up on meeting both workers: one worker taking them all is 1 in 2^63. */
const TRIES = 64

/** A session's tokens, and the client fields its refresh names. */
interface Session { access: string, refresh: string, sid: string, client: Record<string, string> }

function sidOf (accessToken: string): string {
  return (JSON.parse(Buffer.from(accessToken.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }).sid
}

/** What each worker of `server` answered to `path` with `token`, asked on fresh connections until both have answered. */
async function byWorker (server: RunningServer, path: string, token: string): Promise<Map<number, Set<number>>> {
  const answers = new Map<number, Set<number>>()
  for (let i = 0; i < TRIES && answers.size < 2; i++) {
    const reply = await request(`${server.url}${path}`, { headers: { authorization: `Bearer ${token}` } })
    const [line = '{}'] = await server.logOf(1, requestLineOf(String(reply.headers['x-request-id'])))
    const { pid } = JSON.parse(line) as { pid: number }
    answers.set(pid, (answers.get(pid) ?? new Set()).add(reply.status))
  }
  return answers
}

t.test('every worker of every instance refuses a session the moment it has ended, however it ended', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '1000000', TESSERA_REFRESH_GRACE: '1s' }
  const instances = [await startServer(t, env), await startServer(t, env)]
  const [a, b] = instances as [RunningServer, RunningServer]

  const token = async (server: RunningServer, fields: Record<string, string>): Promise<{ status: number, body: Record<string, string> }> => {
    const reply = await request(`${server.url}/oauth/token`, { method: 'POST', body: new URLSearchParams(fields).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    return { status: reply.status, body: reply.json() }
  }
  const login = async (username: string, fields: Record<string, string> = {}): Promise<Session> => {
    const { status, body } = await token(a, { grant_type: 'password', username, password: PASSWORD, ...fields })
    t.equal(status, 200, `${username} logs in`)
    return { access: body.access_token ?? '', refresh: body.refresh_token ?? '', sid: sidOf(body.access_token ?? ''), client: fields }
  }
  const user = async (username: string): Promise<void> => {
    const made = await runCli(['users', 'create', username], env, `${PASSWORD}\n`)
    t.equal(made.code, 0, made.stderr)
  }
  const call = async (server: RunningServer, method: string, path: string, session: Session, body?: object): Promise<number> =>
    (await request(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${session.access}` }, body })).status
  /** `expected` from both workers of both instances, on the route that reads the session with the profile and on one that checks it first. */
  const everyWorker = async (session: Session, expected: number, what: string): Promise<void> => {
    for (const [i, server] of instances.entries()) {
      for (const path of ['/v1/me', '/v1/sessions']) {
        const answers = await byWorker(server, path, session.access)
        t.equal(answers.size, 2, `${what}: both workers of instance ${i + 1} answered ${path}`)
        t.same([...answers.values()].map((statuses) => [...statuses]), [[expected], [expected]], `${what}: instance ${i + 1}'s workers answer ${path} ${expected}`)
      }
    }
  }
  /** Every worker verifies the session's token (and so remembers it) and finds the session live; then `end` ends it, and every worker refuses it. */
  const endedEverywhere = async (session: Session, what: string, end: () => Promise<void>): Promise<void> => {
    await everyWorker(session, 200, `before ${what}`)
    await end()
    await everyWorker(session, 401, `after ${what}`)
    t.not((await token(b, { grant_type: 'refresh_token', refresh_token: session.refresh, ...session.client })).status, 200, `after ${what}: its refresh token is refused`)
  }

  await user('ann')
  const loggedOut = await login('ann')
  await endedEverywhere(loggedOut, 'a logout', async () => { t.equal(await call(b, 'POST', '/v1/logout', loggedOut, {}), 200) })

  const deleted = await login('ann')
  const deleting = await login('ann')
  await endedEverywhere(deleted, 'DELETE /v1/sessions/:id', async () => { t.equal(await call(b, 'DELETE', `/v1/sessions/${deleted.sid}`, deleting), 204) })

  const revoked = await login('ann')
  await endedEverywhere(revoked, '/oauth/revoke', async () => {
    t.equal((await request(`${b.url}/oauth/revoke`, { method: 'POST', body: `token=${revoked.refresh}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 200)
  })

  const reused = await login('ann')
  const rotated = await token(a, { grant_type: 'refresh_token', refresh_token: reused.refresh })
  t.equal(rotated.status, 200)
  const successor = { access: rotated.body.access_token ?? '', refresh: rotated.body.refresh_token ?? '', sid: reused.sid, client: {} }
  await endedEverywhere(successor, 'a refresh token\'s reuse', async () => {
    await sleep(1100) // past TESSERA_REFRESH_GRACE: presenting the used token again is reuse
    t.equal((await token(b, { grant_type: 'refresh_token', refresh_token: reused.refresh })).body.error, 'invalid_grant')
  })

  const other = await login('ann')
  const changing = await login('ann')
  await endedEverywhere(other, 'a password change', async () => {
    t.equal(await call(b, 'PUT', '/v1/password', changing, { current_password: PASSWORD, new_password: `${PASSWORD} 2` }), 200)
  })
  await everyWorker(changing, 200, 'the session that changed the password')
  await endedEverywhere(changing, 'a logout of every session', async () => { t.equal(await call(a, 'POST', '/v1/logout', changing, { all: true }), 200) })

  await user('bob')
  const disabledUser = await login('bob')
  await endedEverywhere(disabledUser, 'tessera users disable', async () => { t.equal((await runCli(['users', 'disable', 'bob'], env)).code, 0) })

  const made = await runCli(['clients', 'create', 'web', '--grants', 'password,refresh_token'], env)
  t.equal(made.code, 0, made.stderr)
  await user('cat')
  const ofClient = await login('cat', { client_id: 'web' })
  await endedEverywhere(ofClient, 'tessera clients disable', async () => { t.equal((await runCli(['clients', 'disable', 'web'], env)).code, 0) })
})
