/**
 * What broke at a production's volumes (session 25, docs/performance-history.md,
 * "Production volumes (session 25)"), held here by what does not depend on
 * the volume: the plans the statements get (an index, not a read of the
 * whole table; asked with sequential scans priced out, as on a table this
 * small the planner would rather read it all), and an operator's list of
 * more users than a function call takes arguments or its heap holds.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { sql, CompiledQuery } from 'kysely'
import type { Db } from '../../src/db/database.js'
import { tailAudit } from '../../src/audit/tail.js'
import { formatTable } from '../../src/cli/output.js'
import { listUserPages } from '../../src/users/manage.js'
import { deleteExpiredTokens, deleteSessionsIfDue, deleteTokensOf, pruneAuditEvents, selectDueSessions } from '../../src/sessions/cleanup.js'
import { createTestDatabase, loggingDb, testConnection } from '../helpers/db.js'
import { CLI_ENTRY, runCli } from '../helpers/server.js'

interface PlanNode { 'Node Type': string, Operation?: string, 'Parent Relationship'?: string, 'Relation Name'?: string, 'Index Name'?: string, 'Index Cond'?: string, Plans?: PlanNode[] }

function nodes (plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)]
}

/**
 * Every node of the plan the statement gets with sequential scans priced out:
 * one still there means no index can serve it. Or, `asIs`, the plan the
 * planner picks (on tables filled and analyzed).
 */
async function planOf (db: Db, query: Pick<CompiledQuery, 'sql' | 'parameters'>, asIs = false): Promise<PlanNode[]> {
  return nodes(await planTreeOf(db, query, asIs))
}

async function planTreeOf (db: Db, query: Pick<CompiledQuery, 'sql' | 'parameters'>, asIs: boolean): Promise<PlanNode> {
  return await db.connection().execute(async (conn) => {
    if (!asIs) await sql`SET enable_seqscan = off`.execute(conn)
    try {
      const { rows } = await conn.executeQuery<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(CompiledQuery.raw(`EXPLAIN (FORMAT JSON) ${query.sql}`, [...query.parameters]))
      const plan = rows[0]?.['QUERY PLAN'][0]?.Plan
      if (plan === undefined) throw new Error('EXPLAIN answered no plan')
      return plan
    } finally {
      await sql`RESET enable_seqscan`.execute(conn)
    }
  })
}

/**
 * The scans that read a whole table: a sequential one, or one along an index
 * with no condition on it (a walk of the primary key in order, filtering
 * every row, as `audit tail --user` did).
 */
const wholeTableScans = (plan: PlanNode[]): string[] => plan
  .filter((n) => n['Node Type'] === 'Seq Scan' || (/^Index (Only )?Scan$/.test(n['Node Type']) && n['Index Cond'] === undefined))
  .map((n) => `${n['Node Type']} on ${n['Relation Name'] ?? '?'}`)

const INDEX_SCANS = ['Index Scan', 'Index Only Scan', 'Bitmap Heap Scan', 'Bitmap Index Scan']

/**
 * How each DELETE of the plan reaches the rows it removes (its input, not
 * the InitPlan that found them): `by` when that is a scan along the index
 * `by` with a condition and nothing else, no join; else the nodes it is.
 */
function deletedBy (plan: PlanNode, by: string): string[] {
  const deletes = nodes(plan).filter((n) => n['Node Type'] === 'ModifyTable' && n.Operation === 'Delete')
  return deletes.map((del) => {
    const input = (del.Plans ?? []).filter((n) => n['Parent Relationship'] === 'Outer').flatMap(nodes)
    const alongIt = input.length > 0 && input.every((n) => INDEX_SCANS.includes(n['Node Type']) && (n['Index Name'] ?? by) === by) &&
      input.some((n) => n['Index Name'] === by && n['Index Cond'] !== undefined)
    return alongIt ? by : input.map((n) => `${n['Node Type']}${n['Index Name'] === undefined ? '' : ` ${n['Index Name']}`}`).join(', ')
  })
}

t.test('deleting a user: the cascade to its sessions reads them by index, revoked ones included', async (t) => {
  const { db } = await testConnection(t)
  // The statement Postgres's foreign-key trigger runs for ON DELETE CASCADE (ri_triggers.c).
  const cascade = { sql: 'DELETE FROM ONLY "public"."sessions" WHERE $1 OPERATOR(pg_catalog.=) "user_id"', parameters: ['00000000-0000-0000-0000-000000000001'] }
  const plan = await planOf(db, cascade)
  t.same(wholeTableScans(plan), [], 'no read of the whole sessions table')
  t.ok(plan.some((n) => n['Index Name'] === 'sessions_user'), 'the cascade uses sessions_user')
  // A revoked session must go with its user too: an index of the live ones alone cannot serve the cascade.
  const { rows: [index] } = await sql<{ predicate: string | null }>`SELECT pg_get_expr(indpred, indrelid) AS predicate FROM pg_index WHERE indexrelid = 'sessions_user'::regclass`.execute(db)
  t.equal(index?.predicate, null, 'sessions_user holds every session, not only the live ones')
})

t.test('audit tail --user reads the user\'s events by index, not every event of the table', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const deleted = '00000000-0000-0000-0000-0000000000aa'
  await db.insertInto('audit_events').values([
    { type: 'user.created', user_id: deleted, username: 'gone' },
    { type: 'session.ended', user_id: deleted },
    { type: 'login.failed', username: 'gone' },
    { type: 'login.failed', username: 'other' }
  ]).execute()
  const sent: CompiledQuery[] = []
  const logged = loggingDb(t, url, (query) => { sent.push(query) })
  const expected = { gone: ['user.created', 'session.ended', 'login.failed'], [deleted]: ['user.created', 'session.ended'] }
  for (const [user, types] of Object.entries(expected)) {
    sent.length = 0
    const rows = await tailAudit(logged, { user, limit: 50 })
    t.same(rows.map((r) => r.type), types, `${user}: the events about the name or the id it went by`)
    t.equal(sent.length, 1, 'one statement')
    for (const query of sent) t.same(wholeTableScans(await planOf(db, query)), [], `${user}: no read of a whole table`)
  }
})

t.test('cleanup finds and deletes by index, on tables of some size: expired tokens, due sessions, their tokens, old audit events', async (t) => {
  const { db } = await testConnection(t)
  const due = { now: new Date(), revokedBefore: new Date(Date.now() - 7 * 86_400_000) }
  const plan = await planOf(db, selectDueSessions(db, due, 1000).compile())
  t.same(wholeTableScans(plan), [], 'due sessions: an index for each way a session is due')
  t.ok(plan.some((n) => n['Index Name'] === 'sessions_expires_at') && plan.some((n) => n['Index Name'] === 'sessions_revoked_at'), 'sessions_expires_at and sessions_revoked_at')

  // 30,000 sessions over 90 days, half of them expired, one in ten ended; three tokens each, a month's life.
  await sql`INSERT INTO users (username, password_hash) SELECT 'user' || i, 'x' FROM generate_series(1, 3000) i`.execute(db)
  await sql`
    INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at, revoked_at, revoke_reason)
    SELECT gen_random_uuid(), u.id, 'tessera', 'read', c, c, c + interval '45 days', c + interval '90 days',
      CASE WHEN i % 10 = 0 THEN c + interval '1 day' END, CASE WHEN i % 10 = 0 THEN 'revoke' END
    FROM generate_series(1, 30000) i
    JOIN (SELECT id, row_number() OVER () AS n FROM users) u ON u.n = 1 + i % 3000
    CROSS JOIN LATERAL (SELECT now() - interval '90 days' + i * interval '259 seconds' AS c) created`.execute(db)
  await sql`
    INSERT INTO refresh_tokens (jti, session_id, kid, issued_at, expires_at)
    SELECT gen_random_uuid(), s.id, 'k', s.created_at + j * interval '1 day', s.created_at + j * interval '1 day' + interval '30 days'
    FROM sessions s, generate_series(0, 2) j`.execute(db)
  // 90,000 audit events over the same 90 days.
  await sql`INSERT INTO audit_events (type, actor, occurred_at) SELECT 'login.succeeded', 'system', now() - interval '90 days' + i * interval '86 seconds' FROM generate_series(1, 90000) i`.execute(db)
  await sql`ANALYZE sessions, refresh_tokens, audit_events`.execute(db)
  const picked = (await selectDueSessions(db, due, 1000).execute()).map((row) => row.id)
  t.equal(picked.length, 1000)
  // A week's worth due, the backlog of a cleanup stopped that long: the first tokens expired 60 days ago, the first events are 90 days old.
  const tokensExpiredBy = new Date(Date.now() - 53 * 86_400_000)
  const auditBefore = new Date(Date.now() - 83 * 86_400_000)
  // As the planner picks, not with sequential scans priced out: at this size a semi-join of the 1,000 found with the table read all of it.
  // The statements given the picked sessions' ids get a tenth of them, a batch's share of a production's tables (1,000 of
  // millions) rather than of these: Postgres 15 and 16 price `= any(array)` along an index as one descent per element
  // (and run it so: 3,000 index pages hit for 1,000 sessions, against 619 for the whole table), so 1,000 ids of these
  // 30,000 sessions are cheaper read off the table there, while 17 on prices the descents the sorted array needs. At ten
  // times these volumes 15 reads all 1,000 by index too (docs/performance-history.md, "Plans on Postgres 15 and 16").
  const some = picked.slice(0, 100)
  const statements: Array<[string, Pick<CompiledQuery, 'sql' | 'parameters'>, string[]]> = [
    ['the expired tokens', deleteExpiredTokens(db, tokensExpiredBy, 1000).compile(), ['refresh_tokens_expires_at', 'refresh_tokens_pkey']],
    ['the tokens of the sessions picked', deleteTokensOf(db, some, 1000).compile(), ['refresh_tokens_session', 'refresh_tokens_pkey']],
    ['the sessions picked', deleteSessionsIfDue(db, some, due).compile(), ['sessions_pkey']],
    ['the old audit events', pruneAuditEvents(auditBefore, 1000, { actor: 'system' }).compile(db), ['audit_events_occurred_at', 'audit_events_pkey']]
  ]
  for (const [name, statement, indexes] of statements) {
    const tree = await planTreeOf(db, statement, true)
    const plan = nodes(tree)
    t.same(wholeTableScans(plan), [], `${name}: no read of a whole table`)
    t.ok(indexes.every((index) => plan.some((n) => n['Index Name'] === index)), `${name}: by ${indexes.join(' and ')}`)
    // What `= any(array(…))` holds whatever the volume and the planner: the rows found are deleted by primary key,
    // where `IN (…)` leaves the planner a join with the table (read whole at these volumes, a loop over the key at larger).
    const pkey = indexes.at(-1) ?? ''
    t.same(deletedBy(tree, pkey), [pkey], `${name}: deleted by ${pkey}, no join`)
  }
})

interface ListedUser { id: string, username: string, created_at: string, disabled_at: string | null, live_sessions: number }

/** The table `users list` printed when it held every user at once: formatTable over all the rows. */
const wholeTable = (users: ListedUser[]): string => formatTable(users.map((user) => ({
  username: user.username,
  id: user.id,
  created: user.created_at.slice(0, 19).replace('T', ' '),
  state: user.disabled_at === null ? 'enabled' : 'disabled',
  sessions: String(user.live_sessions)
})))

/** Like `| head`: reads the first chunk, then closes the pipe with the rest unread. */
async function intoHead (args: string[], env: Record<string, string>): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdout.once('data', () => { child.stdout.destroy() })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, stderr }
}

t.test('users list streams more users than its heap holds (and than a function call takes arguments), laid out as if it held them all', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  const count = 150_000
  await sql`INSERT INTO users (username, password_hash) SELECT 'user' || i, 'x' FROM generate_series(1, ${count}) i`.execute(db)
  // Last by name, on the last page: its width and its state's must be known before the first page is printed.
  const longest = 'z'.repeat(64)
  await db.insertInto('users').values({ username: longest, password_hash: 'x', disabled_at: new Date() }).execute()
  // The CLI's own start takes some 20 MB of heap; these users all at once needed more than 96 MB (400,000 took an RSS of 709 MB).
  const env = { DATABASE_URL: url, NODE_OPTIONS: '--max-old-space-size=48' }
  const json = await runCli(['users', 'list', '--json'], env)
  t.same([json.code, json.stderr], [0, ''], '--json in a 48 MB heap')
  const users = JSON.parse(json.stdout) as ListedUser[]
  t.equal(users.length, count + 1, 'one JSON array of every user')
  t.equal(new Set(users.map((user) => user.username)).size, count + 1, 'each once')
  t.match(users.at(-1), { username: longest, disabled_at: /^\d{4}-/ }, 'the longest name last, disabled')
  const table = await runCli(['users', 'list'], env)
  t.same([table.code, table.stderr], [0, ''], 'the table in a 48 MB heap')
  t.equal(table.stdout.split('\n').length, count + 3, 'a header, a line per user and the final newline')
  t.ok(table.stdout === `${wholeTable(users)}\n`, 'the very table formatTable makes of every row at once')
  for (const args of [['users', 'list'], ['users', 'list', '--json']]) {
    t.same(await intoHead(args, { DATABASE_URL: url }), { code: 0, stderr: '' }, `${args.join(' ')} | head: no EPIPE stack, exit 0`)
  }
})

t.test('a page of users list is read by the username index, each user\'s live sessions by sessions_user', async (t) => {
  const url = await createTestDatabase(t)
  const { db } = await testConnection(t, url)
  // 3,000 users with 10 sessions each, one in ten ended, analyzed: on empty tables the planner would count by any index of live sessions.
  await sql`INSERT INTO users (username, password_hash) SELECT 'user' || i, 'x' FROM generate_series(1, 3000) i`.execute(db)
  await sql`
    INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, expires_at, absolute_expires_at, revoked_at, revoke_reason)
    SELECT gen_random_uuid(), u.id, 'tessera', 'read', now(), now(), now() + interval '1 day', now() + interval '90 days',
      CASE WHEN i % 10 = 0 THEN now() END, CASE WHEN i % 10 = 0 THEN 'revoke' END
    FROM users u, generate_series(1, 10) i`.execute(db)
  await sql`ANALYZE users, sessions`.execute(db)
  const sent: CompiledQuery[] = []
  const logged = loggingDb(t, url, (query) => { sent.push(query) })
  const pages = listUserPages(logged, { disabledOnly: false, now: new Date() })
  await pages.next()
  await pages.next()
  await pages.return()
  const [, second] = sent
  if (second === undefined) throw new Error('no second page was read')
  const plan = await planOf(db, second)
  // The first page walks the index from its start and stops at its LIMIT; the second is like every later one.
  t.same(wholeTableScans(plan), [], 'a page after the first: no read of a whole table')
  t.ok(plan.some((n) => n['Index Name'] === 'users_username_key') && plan.some((n) => n['Index Name'] === 'sessions_user'), 'users_username_key and sessions_user')
})
