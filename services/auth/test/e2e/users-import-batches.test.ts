/**
 * `tessera users import` in batches: many rows, a database failure part-way,
 * two imports at once. Apart from django-import.test.ts so that neither file
 * runs near tap's time limit on a loaded machine.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sql } from 'kysely'
import pg from 'pg'
import { createTestDatabase, lockWaiters, testConnection } from '../helpers/db.js'
import { djangoOracle, scratchDir } from '../helpers/django.js'
import { within } from '../helpers/http.js'
import { runCli } from '../helpers/server.js'

// Not NFKC-stable and with a space: Django hashes the password as typed.
const PASSWORD = 'ﬁne Pässwörd 1'

t.test('many rows: batched, and re-running skips them all', async (t) => {
  const dir = await scratchDir(t)
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<string, string>
  const count = 5000
  const lines = ['username,password_hash,disabled']
  for (let i = 0; i < count; i++) lines.push(`bulk${i},${hashes.pbkdf2_sha256 ?? ''},false`)
  lines.push(`BULK7,${hashes.pbkdf2_sha256 ?? ''},false`)
  const file = join(dir, 'bulk.csv')
  await writeFile(file, lines.join('\n'))
  const first = JSON.parse((await runCli(['users', 'import', file, '--json'], env)).stdout)
  t.equal(first.problems.length, 1)
  t.match(first, { read: count + 1, created: count, duplicates: 1, problems: [{ position: count + 2, reason: 'username: same as line 9 after NFKC and lower-casing' }] }, 'a duplicate across batches is found by Postgres')
  const second = JSON.parse((await runCli(['users', 'import', file, '--json'], env)).stdout)
  t.match(second, { created: 0, existing: count, duplicates: 1 })
})

t.test('a database failure part-way: the batches before it are kept and audited as incomplete, and a re-run finishes', async (t) => {
  const dir = await scratchDir(t)
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const connection = await testConnection(t, url)
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<string, string>
  const lines = ['username,password_hash,disabled']
  for (let i = 0; i < 2500; i++) lines.push(`part${i},${hashes.pbkdf2_sha256 ?? ''},false`)
  const file = join(dir, 'part.csv')
  await writeFile(file, lines.join('\n'))
  // A real error from Postgres in the second batch (of 1,000), as a full disk or a lost connection would raise one.
  await sql`CREATE FUNCTION refuse_part1500 () RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.username = 'part1500' THEN RAISE EXCEPTION 'disk full (simulated)'; END IF; RETURN NEW; END $$`.execute(connection.db)
  await sql`CREATE TRIGGER refuse_part1500 BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION refuse_part1500()`.execute(connection.db)

  const stopped = await runCli(['users', 'import', file], env)
  t.equal(stopped.code, 1)
  t.match(stopped.stderr, /^tessera: the import stopped after \d+ record\(s\): disk full \(simulated\); 1000 user\(s\) created before it are kept \(audited as users\.imported, complete: false\): run the same file again to import the rest\n$/)
  const counted = async (): Promise<number> => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM users`.execute(connection.db)).rows[0]?.n)
  t.equal(await counted(), 1000, 'the first batch is in')
  const audits = async (): Promise<unknown[]> => (await sql<{ detail: unknown }>`SELECT detail FROM audit_events WHERE type = 'users.imported' ORDER BY id`.execute(connection.db)).rows.map((r) => r.detail)
  const incomplete = await audits()
  t.equal(incomplete.length, 1)
  t.match(incomplete, [{ complete: false, created: 1000 }], 'and audited, marked incomplete')

  await sql`DROP TRIGGER refuse_part1500 ON users`.execute(connection.db)
  const rerun = JSON.parse((await runCli(['users', 'import', file, '--json'], env)).stdout)
  t.match(rerun, { read: 2500, created: 1500, existing: 1000 }, 'a re-run imports the rest')
  t.equal(await counted(), 2500)
  const both = await audits()
  t.equal(both.length, 2)
  t.match(both, [{ complete: false, created: 1000 }, { complete: true, created: 1500, existing: 1000 }])
  // Each batch is audited by the statement that writes it, so an import killed outright leaves its users audited too.
  const batches = (await sql<{ detail: { created: number, from_position: number, to_position: number, format: string } }>`
    SELECT detail FROM audit_events WHERE type = 'users.import_batch' ORDER BY id`.execute(connection.db)).rows.map((r) => r.detail)
  t.same(batches, [
    { format: 'csv', created: 1000, from_position: 2, to_position: 1001 },
    { format: 'csv', created: 1000, from_position: 1002, to_position: 2001 },
    { format: 'csv', created: 500, from_position: 2002, to_position: 2501 }
  ], 'one row per batch that created users; a batch of existing users only writes none')
})

t.test('two imports at once: the second waits, and counts the names the first made as existing, not as held by a user no import made', async (t) => {
  const dir = await scratchDir(t)
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const connection = await testConnection(t, url)
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<string, string>
  const names = Array.from({ length: 10 }, (_, i) => `both${i}`)
  const csv = (list: string[]): string => `username,password_hash,disabled\n${list.map((n) => `${n},${hashes.pbkdf2_sha256 ?? ''},false`).join('\n')}\n`
  const [first, second] = [join(dir, 'first.csv'), join(dir, 'second.csv')]
  await writeFile(first, csv([...names, 'held']))
  await writeFile(second, csv(names))

  // A sign-up of 'held', uncommitted, parks the first import's statement on
  // that name with the shared names written but not committed; the second
  // import starts then, so the two overlap for certain.
  const [held, watcher] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })]
  for (const client of [held, watcher]) {
    await client.connect()
    t.teardown(async () => { await client.end() })
  }
  await held.query('BEGIN')
  await held.query("INSERT INTO users (username, password_hash) VALUES ('held', 'x')")
  const waiters = async (n: number): Promise<boolean> => await lockWaiters(watcher) >= n
  const firstRun = runCli(['users', 'import', first, '--json'], env)
  t.ok(await within(30_000, async () => await waiters(1)) !== undefined, 'the first import waits on the held name')
  const secondRun = runCli(['users', 'import', second, '--json'], env)
  t.ok(await within(30_000, async () => await waiters(2)) !== undefined, 'the second waits too')
  await held.query('ROLLBACK')

  const [a, b] = [await firstRun, await secondRun]
  t.equal(a.code, 0, a.stderr)
  t.equal(b.code, 0, b.stderr)
  t.match(JSON.parse(a.stdout), { created: 11, existing: 0, problem_count: 0 })
  t.match(JSON.parse(b.stdout), { created: 0, existing: 10, problem_count: 0 }, 'each name the first made is the second\'s existing one')
  t.equal(b.stderr, 'tessera: another users import is running on this database; waiting for it to end\n', 'the second said why it waited')
  t.equal(Number((await sql<{ n: string }>`SELECT count(*) AS n FROM users`.execute(connection.db)).rows[0]?.n), 11)
})
