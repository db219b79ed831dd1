/**
 * Client rows in the workers' memory (clients/cache.ts), in a real instance
 * of two workers: a client_credentials token reads its client once per
 * worker, an operator's command reaches every worker within a second, and a
 * lost LISTEN connection forgets every row. A change made with triggers off
 * (session_replication_role = replica) is one no worker can hear of: what
 * the workers then answer shows whether they answered from memory.
 */
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { sql } from 'kysely'
import t from 'tap'
import { LISTENER_NAME } from '../../src/db/listen.js'
import { CLIENT_CACHE_TTL_MS } from '../../src/clients/cache.js'
import { replaceCurrentSecret } from '../../src/clients/rotate-secret.js'
import { enableClient } from '../../src/clients/enable.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { within } from '../helpers/http.js'
import { runCli, startServer } from '../helpers/server.js'

/** A client_credentials request on a connection of its own, so the kernel spreads them over both workers. */
async function serviceToken (url: string, clientId: string, secret: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const body = 'grant_type=client_credentials'
    const req = request(`${url}/oauth/token`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` }
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => {
        const parsed = JSON.parse(text) as { scope?: string, error?: string }
        resolve(res.statusCode === 200 ? `200 ${parsed.scope ?? ''}` : `${res.statusCode ?? 0} ${parsed.error ?? ''}`)
      })
    })
    req.on('error', reject)
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')))
    req.end(body)
  })
}

/** What `n` requests on fresh connections answered, each distinct answer once: enough that both workers answer some (all on one is 1 in 2^15). */
async function answers (url: string, clientId: string, secret: string, n = 16): Promise<string[]> {
  const seen = new Set<string>()
  for (let i = 0; i < n; i++) seen.add(await serviceToken(url, clientId, secret))
  return [...seen].sort()
}

t.test('two workers keep client rows while they hear every change, and forget them when they cannot', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '100000' }
  const server = await startServer(t, env)
  const admin = await testConnection(t, databaseUrl)
  const create = async (clientId: string): Promise<string> => {
    const made = await runCli(['clients', 'create', clientId, '--confidential', '--scopes', 'notes:read notes:write', '--json'], env)
    t.equal(made.code, 0, made.stderr)
    return (JSON.parse(made.stdout) as { client_secret: string }).client_secret
  }
  /** A change no trigger fires for, so no worker hears of it. */
  const unheard = async (statement: ReturnType<typeof sql>): Promise<void> => {
    await admin.db.connection().execute(async (db) => {
      await sql`SET session_replication_role = replica`.execute(db)
      try {
        await statement.execute(db)
      } finally {
        await sql`SET session_replication_role = DEFAULT`.execute(db)
      }
    })
  }

  const secret = await create('svc')
  t.same(await answers(server.url, 'svc', secret), ['200 notes:read notes:write'], 'both workers read the client')
  const started = Date.now()
  await unheard(sql`UPDATE clients SET scopes = '{notes:read}' WHERE client_id = 'svc'`)
  t.same(await answers(server.url, 'svc', secret), ['200 notes:read notes:write'], 'a change no one heard of: both answer from memory')
  t.ok(Date.now() - started < CLIENT_CACHE_TTL_MS, 'within the rows\' lifetime, so memory is what answered')

  const disabled = await runCli(['clients', 'disable', 'svc'], env)
  t.equal(disabled.code, 0, disabled.stderr)
  t.ok(await within(1000, async () => (await answers(server.url, 'svc', secret)).join() === '401 invalid_client', 10) !== undefined,
    'an operator\'s disable reaches both workers within a second')

  const other = await create('svc2')
  t.same(await answers(server.url, 'svc2', other), ['200 notes:read notes:write'])
  const beforeLoss = Date.now()
  await unheard(sql`UPDATE clients SET scopes = '{notes:write}' WHERE client_id = 'svc2'`)
  const listener = async (): Promise<number | undefined> =>
    (await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = ${LISTENER_NAME} AND datname = current_database()`.execute(admin.db)).rows[0]?.pid
  const lost = await listener()
  t.ok(lost, 'the instance listens')
  await sql`SELECT pg_terminate_backend(${lost})`.execute(admin.db)
  t.ok(await within(3000, async () => { const now = await listener(); return now !== undefined && now !== lost }, 20) !== undefined, 'listening again on a new connection')
  t.same(await answers(server.url, 'svc2', other), ['200 notes:write'], 'every row kept before the loss is forgotten: the unheard change shows')
  t.ok(Date.now() - beforeLoss < CLIENT_CACHE_TTL_MS, 'before the rows\' lifetime would have ended them')
})

t.test('rotate-secret --keep-old reaches both workers: the lost secret is refused at once, the deployed one and the new one work', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '100000' }
  const server = await startServer(t, env)
  const admin = await testConnection(t, databaseUrl)
  const cli = async (args: string[]): Promise<{ client_secret: string }> => {
    const res = await runCli(['clients', ...args, '--json'], env)
    t.equal(res.code, 0, res.stderr)
    return JSON.parse(res.stdout) as { client_secret: string }
  }
  const served = ['200 notes:read notes:write']
  const refused = ['401 invalid_client']
  const { client_secret: deployed } = await cli(['create', 'svc', '--confidential', '--scopes', 'notes:read notes:write'])
  // The rotation whose output never reached the operator.
  const { client_secret: lost } = await cli(['rotate-secret', 'svc', '--grace', '1h'])
  // Both workers now read the row into memory, with the lost secret as the current one, and answer from there.
  const cachedFrom = Date.now()
  t.same(await answers(server.url, 'svc', lost), served, 'the lost secret works on both workers')
  t.same(await answers(server.url, 'svc', deployed), served, 'the deployed one too, before')

  // The domain call the command makes, in this process: a command's start (a second or more on a loaded machine) would eat into the rows' lifetime.
  const kept = await replaceCurrentSecret(admin.db, { clientId: 'svc', graceSeconds: undefined, clock: () => new Date() }, { actor: 'operator' })
  if (kept.kind !== 'rotated') throw new Error(`--keep-old refused: ${kept.kind}`)
  const fresh = kept.secret
  t.ok(await within(1000, async () => (await answers(server.url, 'svc', lost)).join() === refused.join(), 10) !== undefined,
    'the lost secret is refused by both workers within a second')
  t.ok(Date.now() - cachedFrom < CLIENT_CACHE_TTL_MS, 'before the rows\' lifetime would have ended them: the change was heard, as a plain rotation\'s is', { elapsedMs: Date.now() - cachedFrom })
  t.same(await answers(server.url, 'svc', deployed), served, 'the deployed secret works on both workers, after')
  t.same(await answers(server.url, 'svc', fresh), served, 'the new one too')
})

t.test('clients enable reaches both workers: a disabled row they keep in memory is forgotten at once, not at the end of its lifetime', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const env = { DATABASE_URL: databaseUrl, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '100000' }
  const server = await startServer(t, env)
  const admin = await testConnection(t, databaseUrl)
  const made = await runCli(['clients', 'create', 'svc', '--confidential', '--scopes', 'notes:read notes:write', '--json'], env)
  t.equal(made.code, 0, made.stderr)
  const secret = (JSON.parse(made.stdout) as { client_secret: string }).client_secret
  const disabled = await runCli(['clients', 'disable', 'svc'], env)
  t.equal(disabled.code, 0, disabled.stderr)
  // No request named svc before this point: every row a worker keeps from here on was read after the disable was heard, and is aged from no earlier.
  const cachedFrom = Date.now()
  t.ok(await within(1000, async () => (await answers(server.url, 'svc', secret)).join() === '401 invalid_client', 10) !== undefined, 'disabled on both workers, which now keep the disabled row')

  // The domain call the command makes, in this process: a command's start would eat into the rows' lifetime.
  t.same(await enableClient(admin.db, 'svc', { actor: 'operator' }), { changed: true, confidential: true })
  t.ok(await within(1000, async () => (await answers(server.url, 'svc', secret)).join() === '200 notes:read notes:write', 10) !== undefined,
    'the enable reaches both workers within a second')
  t.ok(Date.now() - cachedFrom < CLIENT_CACHE_TTL_MS, 'before the rows\' lifetime would have ended them: the change was heard, as a disable\'s is', { elapsedMs: Date.now() - cachedFrom })
})
