/**
 * importUsers across batch boundaries (users/import.ts), against a real
 * Postgres and files read by readImportFile. The CLI always imports 1,000 rows
 * a batch; here batches of two, so that what happens between batches (a file
 * that stops after some, renamed rows deferred and read back a page at a time,
 * the problem list's cap) is reached with a few rows.
 */
import t from 'tap'
import { pbkdf2Sync } from 'node:crypto'
import { Readable } from 'node:stream'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { connect } from '../../src/db/connect.js'
import type { Database, Db } from '../../src/db/database.js'
import { importUsers, type ImportOptions } from '../../src/users/import.js'
import { readImportFile, type ImportFormat, type SourceRecord } from '../../src/users/import-sources.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'

/** A real Django pbkdf2_sha256 hash; which password it holds does not matter here, only that the import takes it. */
const HASH = `pbkdf2_sha256$1000$salt$${pbkdf2Sync('a password', 'salt', 1000, 32, 'sha256').toString('base64')}`

const options = (format: ImportFormat, more: Partial<ImportOptions> = {}): ImportOptions => ({ dryRun: false, now: new Date(), batchSize: 2, format, ...more })

const fileOf = (text: string, format: ImportFormat): AsyncGenerator<SourceRecord> => readImportFile(Readable.from([Buffer.from(text)]), format)

/** A CSV export: each row a username with HASH, or a whole line of its own when it holds a comma. */
const csv = (rows: string[]): string => ['username,password_hash,disabled', ...rows.map((r) => r.includes(',') ? r : `${r},${HASH},false`)].join('\n') + '\n'

const MD5 = 'md5$salt$0123456789abcdef0123456789abcdef'

async function usersIn (db: Db): Promise<Array<{ username: string, imported_as: string | null }>> {
  return await db.selectFrom('users').select(['username', 'imported_as']).orderBy('username').execute()
}

t.test('a dump cut short after full batches: those batches are in, the batch being read is not, nor any renamed row, deferred or not; the whole file again finishes', async (t) => {
  const { db } = await testConnection(t)
  const record = (username: string): object => ({ model: 'auth.user', pk: 1, fields: { username, password: HASH, is_active: true } })
  // user1 user2 | user3 user4 | user5 …cut. Yan and Zed (renamed) fill a deferred batch of their own before the cut.
  const whole = JSON.stringify([record('user1'), record('user2'), record('Yan'), record('user3'), record('Zed'), record('user4'), record('user5'), record('user6')])
  const cut = whole.slice(0, whole.indexOf('"user6"'))

  const report = await importUsers(db, fileOf(cut, 'django'), options('django'))
  t.match(report, { read: 7, created: 4, renamed: 0, renamedUsers: [], problemCount: 0, error: /^the file is not a complete JSON array of records \(after record 7: .*\); is it truncated\?$/ })
  t.same((await usersIn(db)).map((u) => u.username), ['user1', 'user2', 'user3', 'user4'], 'user5, read in the unfinished batch, is dropped; yan and zed wait for a whole file, which may still hold their exact spelling')

  const again = await importUsers(db, fileOf(whole, 'django'), options('django'))
  t.match(again, { read: 8, created: 4, existing: 4, renamed: 2 })
  t.equal(again.error, undefined, 'read to its end')
  t.same(await usersIn(db), [
    { username: 'user1', imported_as: null }, { username: 'user2', imported_as: null }, { username: 'user3', imported_as: null },
    { username: 'user4', imported_as: null }, { username: 'user5', imported_as: null }, { username: 'user6', imported_as: null },
    { username: 'yan', imported_as: 'Yan' }, { username: 'zed', imported_as: 'Zed' }
  ])
})

t.test('renamed rows wait for the whole file, however many batches they fill: an exact spelling later in the file keeps its name, and each renamed row is judged once', async (t) => {
  const { db } = await testConnection(t)
  // Five renamed rows: three deferred pages of two; bob and dan spelled exactly after them, in later batches.
  const file = csv(['Amy', 'Bob', 'Cat', 'Dan', 'Eve', 'fay', 'bob', 'dan'])

  const report = await importUsers(db, fileOf(file, 'csv'), options('csv'))
  t.match(report, { read: 8, created: 6, existing: 0, duplicates: 2, renamed: 3, problemCount: 2 })
  t.same(report.renamedUsers, [
    { position: 2, django: 'Amy', tessera: 'amy' }, { position: 4, django: 'Cat', tessera: 'cat' }, { position: 6, django: 'Eve', tessera: 'eve' }
  ])
  t.same(report.problems, [
    { position: 3, username: 'Bob', reason: 'username: same as line 8 after NFKC and lower-casing, which is kept: it is spelled "bob"' },
    { position: 5, username: 'Dan', reason: 'username: same as line 9 after NFKC and lower-casing, which is kept: it is spelled "dan"' }
  ], 'in file order, though judged after the exact spellings')
  t.same(await usersIn(db), [
    { username: 'amy', imported_as: 'Amy' }, { username: 'bob', imported_as: null }, { username: 'cat', imported_as: 'Cat' },
    { username: 'dan', imported_as: null }, { username: 'eve', imported_as: 'Eve' }, { username: 'fay', imported_as: null }
  ], 'bob and dan are the Django users spelled so; Amy, Cat and Eve under the names Tessera keeps')
})

t.test('past maxProblems the problems are counted, not listed, and the renamed rows\' (judged last) are the ones left out; the renamed list has the same cap', async (t) => {
  const { db } = await testConnection(t)
  // Kay (renamed) is judged after everything else, though first in the file.
  const file = csv(['Kay', 'kay', 'Lou', 'Max', 'Ned', `bad1,${MD5},false`, `bad2,${MD5},false`])

  const report = await importUsers(db, fileOf(file, 'csv'), options('csv', { maxProblems: 2 }))
  t.match(report, { read: 7, created: 4, duplicates: 1, renamed: 3, problemCount: 3 })
  t.same(report.problems.map((p) => [p.position, p.username]), [[7, 'bad1'], [8, 'bad2']], 'Kay\'s duplicate, judged third, is counted but not listed')
  t.same(report.renamedUsers.map((r) => r.django), ['Lou', 'Max'], 'two of the three renamed, in file order')
})

t.test('a dry run counts what it would create, across batches and deferred rows, and writes nothing', async (t) => {
  const { db } = await testConnection(t)
  await db.insertInto('users').values({ username: 'taken', password_hash: HASH }).execute()
  const file = csv(['one', 'two', 'three', 'Four', 'taken', 'one'])

  const report = await importUsers(db, fileOf(file, 'csv'), options('csv', { dryRun: true }))
  t.match(report, { dryRun: true, read: 6, created: 4, renamed: 1, duplicates: 1, problemCount: 2 })
  t.same(report.problems.map((p) => [p.position, p.reason.split(':')[0]]), [[6, 'username'], [7, 'username']])
  t.match(report.problems, [{ reason: /^username: held in Tessera by a user no import made/ }, { reason: 'username: same as line 2 after NFKC and lower-casing' }])
  t.same((await usersIn(db)).map((u) => u.username), ['taken'], 'nothing written')
  t.equal((await db.selectFrom('audit_events').select('id').where('type', '=', 'users.import_batch').execute()).length, 0, 'nor any batch audited')
})

t.test('every batch runs with JIT off, as connect() sets it on each connection, and the import leaves it so', async (t) => {
  // A Postgres built with LLVM compiled each batch statement (its estimated
  // cost is far past jit_above_cost) for longer than it took to run. The
  // CLI's connection is connect()'s: its pool here, under a Kysely that sees
  // each statement, on a database whose own default is JIT on. The setting is
  // read on the very connection that ran the batch, right after it.
  const url = await createTestDatabase(t)
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  try {
    await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET jit = on`)
  } finally { await admin.end() }
  const { pool } = connect(url, 1)
  let client: pg.PoolClient | undefined
  pool.on('acquire', (acquired) => { client = acquired })
  const jitAfterBatch: Array<Promise<string>> = []
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      // pg runs a client's queries in the order they are asked: this one before the import's next.
      if (client !== undefined && event.query.sql.includes('INSERT INTO users')) jitAfterBatch.push(client.query<{ jit: string }>('SHOW jit').then((r) => r.rows[0]?.jit ?? ''))
    }
  })
  t.teardown(async () => { await db.destroy() })
  const setting = async (): Promise<string> => (await sql<{ jit: string }>`SHOW jit`.execute(db)).rows[0]?.jit ?? ''
  t.equal(await setting(), 'off', 'connect() turned it off')

  const report = await importUsers(db, fileOf(csv(['one', 'two', 'three', 'four', 'Five']), 'csv'), options('csv'))
  t.match(report, { created: 5 })
  t.same(await Promise.all(jitAfterBatch), ['off', 'off', 'off'], 'two batches of the file (one, two | three, four) and one of the renamed rows (Five)')
  // A RESET here would hand the pool a connection with the database's JIT on.
  t.equal(await setting(), 'off', 'the pooled connection is handed back with JIT still off')
})
