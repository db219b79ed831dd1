/**
 * `tessera users import`: users with their Django password hashes, streamed
 * in batches. Each record is checked here (username rules after
 * normalisation, a hash format Tessera verifies, within its cost caps); the
 * good ones go to Postgres a batch at a time, each batch ONE statement (one
 * round trip, atomic: a batch is all in or all out). Duplicates in the file
 * are found by Postgres, not by memory: the names seen so far live in a
 * temporary table on the import's own connection, so the process holds one
 * batch whatever the file's size. Usernames already imported are skipped, so
 * running the same file again changes nothing; a name a user signed up or
 * created in Tessera holds is reported (users.imported_at tells them
 * apart). One audit event records the counts.
 *
 * A name that NFKC and lower-casing change (Django's `Dave`) is imported
 * last, and only if no record spelled exactly as Tessera keeps it (`dave`)
 * is in the file: a DRF service finds a token's user by its exact name
 * (docs/migrating-from-simplejwt.md, section 3), so keeping `Dave`'s password
 * under `dave` would let Dave act as Django's `dave`. Those records wait in
 * a second temporary table until the whole file has been read.
 * @module
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { TesseraError } from '../errors.js'
import { USERS_IMPORT_LOCK } from '../db/locks.js'
import { parseDjangoHash } from '../passwords/django.js'
import { normalizeUsername } from '../passwords/policy.js'
import { ImportFileError, type ImportFormat, type SourceRecord } from './import-sources.js'

export interface ImportProblem {
  position: number
  username?: string
  reason: string
}

export interface ImportReport {
  read: number
  created: number
  existing: number
  duplicates: number
  /** Of the created: imported disabled (is_active false). */
  disabled: number
  /** Of the created: Django's unusable password (`!…`); they cannot log in until an operator sets one. */
  unusable: number
  /** Of the created: under a name NFKC and lower-casing changed (`Zed` as `zed`), which a DRF service looking users up by exact name does not find. */
  renamed: number
  /** At most `maxProblems` of the renamed, in file order: the name as Django spells it, and as Tessera keeps it. */
  renamedUsers: RenamedUser[]
  /** Rows not imported for a reason of their own, duplicates included. */
  problemCount: number
  /** At most `maxProblems` of them, in file order; past that cap, the renamed rows' (judged last) are the ones left out. */
  problems: ImportProblem[]
  dryRun: boolean
  /** Set when the file could not be read to its end: the full batches before it are imported, the rest is not, nor any renamed row. */
  error?: string
}

export interface RenamedUser {
  position: number
  django: string
  tessera: string
}

export interface ImportOptions {
  dryRun: boolean
  now: Date
  batchSize?: number
  maxProblems?: number
  format: ImportFormat
  /** Called when another import holds the database: this one waits for it to end. */
  onWait?: () => void
}

/** What a position counts: a record of a JSON array, a line of a CSV file. */
export const positionName = (format: ImportFormat): string => format === 'csv' ? 'line' : 'record'

interface GoodRow {
  position: number
  username: string
  passwordHash: string
  disabled: boolean
  /** The name as the file spells it, when that is not `username`. */
  spelled?: string
  /**
   * A record already reported as a problem, spelled exactly as Tessera keeps
   * its name: it is not imported, but its name stays its own, so no other
   * spelling of it (`Dave` for a refused `dave`) is imported in its place.
   */
  refused?: true
}

/** Tessera's own argon2id, as `tessera users create` or a Tessera export writes it. */
const TESSERA_HASH = /^\$argon2id\$v=19\$m=\d{1,7},t=\d{1,2},p=\d{1,3}\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/

/** Why a stored password hash cannot be imported; undefined when it can. */
export function hashProblem (hash: string): string | undefined {
  if (hash.startsWith('!')) return undefined
  // Tessera's own form is Django's argon2 without its prefix: the same cost caps hold, or one hostile row makes every login of that name cost minutes.
  const parsed = parseDjangoHash(TESSERA_HASH.test(hash) ? `argon2${hash}` : hash)
  return parsed.ok ? undefined : parsed.reason
}

function checkRecord (record: SourceRecord): GoodRow | ImportProblem {
  const { position } = record
  if (record.problem !== undefined) return { position, reason: record.problem }
  if (typeof record.username !== 'string' || record.username === '') return { position, reason: 'username: missing' }
  const username = normalizeUsername(record.username)
  if (username === undefined) {
    return { position, username: record.username.slice(0, 80), reason: 'username: after NFKC and lower-casing it must be 3 to 64 of a-z, 0-9, ".", "_", "-"' }
  }
  if (typeof record.disabled === 'string') return { position, username, reason: `disabled: "${record.disabled.slice(0, 40)}" is not true or false` }
  if (typeof record.passwordHash !== 'string' || record.passwordHash === '') return { position, username, reason: 'password: missing hash' }
  const problem = hashProblem(record.passwordHash)
  if (problem !== undefined) return { position, username, reason: `password: ${problem}` }
  const row = { position, username, passwordHash: record.passwordHash, disabled: record.disabled }
  return record.username === username ? row : { ...row, spelled: record.username.slice(0, 80) }
}

/** For a record reported as a problem: the row that keeps its name, when the file spells that name exactly as Tessera keeps it. */
function nameKeptBy (record: SourceRecord): GoodRow | undefined {
  if (typeof record.username !== 'string' || normalizeUsername(record.username) !== record.username) return undefined
  return { position: record.position, username: record.username, passwordHash: '', disabled: false, refused: true }
}

interface BatchOutcome {
  position: number
  /**
   * `existing`: imported before from this same spelling. `taken`: held by a
   * user no import created. `spelled_otherwise`: imported before from
   * another Django user's spelling of the name (`Dave` then `dave`).
   */
  outcome: 'created' | 'existing' | 'taken' | 'spelled_otherwise' | 'duplicate'
  first_position: number
  first_refused: boolean
  held_as: string | null
}

/**
 * One statement: note each name as seen (the first record of a name wins),
 * insert the first-seen ones that no user has yet, and say what became of
 * each row. A dry run checks existence instead of inserting.
 */
async function importBatch (db: Db, rows: GoodRow[], options: ImportOptions): Promise<BatchOutcome[]> {
  const positions = rows.map((r) => r.position)
  const usernames = rows.map((r) => r.username)
  const hashes = rows.map((r) => r.passwordHash)
  const disabled = rows.map((r) => r.disabled)
  const spelled = rows.map((r) => r.spelled ?? null)
  const refused = rows.map((r) => r.refused === true)
  const created = options.dryRun
    ? sql`SELECT s.username FROM seen s WHERE NOT s.refused AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = s.username)`
    : sql`INSERT INTO users (username, password_hash, disabled_at, imported_at, imported_as)
        SELECT i.username, i.password_hash, CASE WHEN i.disabled THEN ${options.now}::timestamptz END, ${options.now}::timestamptz, i.spelled
        FROM input i JOIN seen s ON s.position = i.position WHERE NOT i.refused
        ON CONFLICT (username) DO NOTHING RETURNING username`
  // A name a user holds is this import's own only when an import made it
  // from this very spelling; anything else (a sign-up, even one committed
  // since this statement began, or another Django user's spelling) is reported.
  // The batch's audit row is written by the statement that writes its users:
  // an import killed after any batch leaves every user it created audited.
  // A row's first sighting in this batch is a join on `seen`: a subquery per
  // row would scan that CTE (it has no index) once a row, 1,000² a batch.
  // Its estimated cost (unnest's guessed row count times its subqueries) is
  // far past jit_above_cost: it relies on connect() turning JIT off, without
  // which a Postgres built with LLVM compiled each batch for ~1.5 s to run
  // it in ~30 ms (db/connect.ts).
  const audited = options.dryRun
    ? sql``
    : sql`, batch_audited AS (
        INSERT INTO audit_events (type, actor, user_agent, detail)
        SELECT 'users.import_batch', 'operator', 'tessera-cli', jsonb_build_object('format', ${options.format}::text,
          'created', (SELECT count(*) FROM created), 'from_position', min(i.position), 'to_position', max(i.position))
        FROM input i HAVING EXISTS (SELECT 1 FROM created)
      )`
  const result = await sql<BatchOutcome>`
    WITH input AS (
      SELECT * FROM unnest(${positions}::int[], ${usernames}::text[], ${hashes}::text[], ${disabled}::bool[], ${spelled}::text[], ${refused}::bool[])
        AS t(position, username, password_hash, disabled, spelled, refused)
    ), seen AS (
      INSERT INTO import_seen (username, position, refused) SELECT username, position, refused FROM input ORDER BY position
      ON CONFLICT (username) DO NOTHING RETURNING username, position, refused
    ), created AS (${created})${audited}
    SELECT i.position,
      CASE WHEN s.position IS NULL THEN 'duplicate'
        WHEN c.username IS NOT NULL THEN 'created'
        WHEN EXISTS (SELECT 1 FROM users u WHERE u.username = i.username AND u.imported_at IS NOT NULL AND u.imported_as IS NOT DISTINCT FROM i.spelled) THEN 'existing'
        WHEN EXISTS (SELECT 1 FROM users u WHERE u.username = i.username AND u.imported_at IS NOT NULL) THEN 'spelled_otherwise'
        ELSE 'taken' END AS outcome,
      COALESCE(f.position, (SELECT p.position FROM import_seen p WHERE p.username = i.username)) AS first_position,
      COALESCE(f.refused, (SELECT p.refused FROM import_seen p WHERE p.username = i.username)) AS first_refused,
      (SELECT coalesce(u.imported_as, u.username) FROM users u WHERE u.username = i.username) AS held_as
    FROM input i
    LEFT JOIN seen s ON s.position = i.position
    LEFT JOIN seen f ON f.username = i.username
    LEFT JOIN created c ON c.username = i.username AND s.position IS NOT NULL
    ORDER BY i.position`.execute(db)
  return result.rows
}

/** Keeps renamed rows, one statement per batch, until the whole file has been read. */
async function deferBatch (db: Db, rows: GoodRow[]): Promise<void> {
  await sql`INSERT INTO import_deferred (position, username, password_hash, disabled, spelled)
    SELECT * FROM unnest(${rows.map((r) => r.position)}::int[], ${rows.map((r) => r.username)}::text[],
      ${rows.map((r) => r.passwordHash)}::text[], ${rows.map((r) => r.disabled)}::bool[], ${rows.map((r) => r.spelled ?? r.username)}::text[])`.execute(db)
}

async function * deferredRows (db: Db, batchSize: number): AsyncGenerator<GoodRow[]> {
  let after = 0
  for (;;) {
    const { rows } = await sql<{ position: number, username: string, password_hash: string, disabled: boolean, spelled: string }>`
      SELECT position, username, password_hash, disabled, spelled FROM import_deferred
      WHERE position > ${after} ORDER BY position LIMIT ${batchSize}`.execute(db)
    if (rows.length === 0) return
    after = rows[rows.length - 1]?.position ?? after
    yield rows.map((r) => ({ position: r.position, username: r.username, passwordHash: r.password_hash, disabled: r.disabled, spelled: r.spelled }))
  }
}

/** A failure part-way through an import (the database's, most likely): what `report` counts as created is in Postgres. */
export class ImportInterruptedError extends TesseraError {
  readonly report: ImportReport
  readonly code = 'ERR_IMPORT_INTERRUPTED'

  constructor (report: ImportReport, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause })
    this.report = report
  }
}

export async function importUsers (db: Db, records: AsyncIterable<SourceRecord>, options: ImportOptions): Promise<ImportReport> {
  const batchSize = options.batchSize ?? 1000
  const maxProblems = options.maxProblems ?? 1000
  const report: ImportReport = { read: 0, created: 0, existing: 0, duplicates: 0, disabled: 0, unusable: 0, renamed: 0, renamedUsers: [], problemCount: 0, problems: [], dryRun: options.dryRun }
  const problem = (p: ImportProblem): void => {
    report.problemCount++
    if (report.problems.length < maxProblems) report.problems.push(p)
  }
  // The temporary table belongs to one connection: every batch runs on it.
  try {
    await db.connection().execute(async (conn) => {
      // Imports at once would each judge the names the other is writing from
      // a snapshot without them (so as held by a user no import made), and
      // could deadlock on names met in opposite orders: the second waits.
      const { rows: [lock] } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${USERS_IMPORT_LOCK}) AS locked`.execute(conn)
      if (lock?.locked !== true) {
        options.onWait?.()
        await sql`SELECT pg_advisory_lock(${USERS_IMPORT_LOCK})`.execute(conn)
      }
      try {
        await sql`CREATE TEMPORARY TABLE import_seen (username text PRIMARY KEY, position int NOT NULL, refused bool NOT NULL)`.execute(conn)
        await sql`CREATE TEMPORARY TABLE import_deferred (position int PRIMARY KEY, username text NOT NULL, password_hash text NOT NULL, disabled bool NOT NULL, spelled text NOT NULL)`.execute(conn)
        const flush = async (rows: GoodRow[]): Promise<void> => {
          const byPosition = new Map(rows.map((r) => [r.position, r]))
          for (const outcome of await importBatch(conn, rows, options)) {
            const row = byPosition.get(outcome.position)
            // A refused record was reported already; it only kept its name.
            if (row === undefined || row.refused === true) continue
            const username = row.spelled ?? row.username
            if (outcome.outcome === 'duplicate') {
              report.duplicates++
              const first = `username: same as ${positionName(options.format)} ${outcome.first_position} after NFKC and lower-casing`
              const why = outcome.first_refused
                ? `, which is not imported (see its problem) and keeps its name: under "${row.username}" this one would be that user to a DRF service`
                : outcome.first_position > row.position ? `, which is kept: it is spelled "${row.username}"` : ''
              problem({ position: row.position, username, reason: `${first}${why}` })
            } else if (outcome.outcome === 'existing') {
              report.existing++
            } else if (outcome.outcome === 'spelled_otherwise') {
              problem({ position: row.position, username, reason: `username: "${row.username}" was imported before from "${outcome.held_as ?? row.username}", another Django user; a DRF service would give one of them the other's data: rename one in Django, delete the Tessera user, and import again` })
            } else if (outcome.outcome === 'taken') {
              problem({ position: row.position, username, reason: 'username: held in Tessera by a user no import made (signed up or created there, or imported before Tessera recorded imports); a DRF service would give them this Django user\'s data: rename one, or delete that user, before switching' })
            } else {
              report.created++
              if (row.disabled) report.disabled++
              if (row.passwordHash.startsWith('!')) report.unusable++
              if (row.spelled !== undefined) {
                report.renamed++
                if (report.renamedUsers.length < maxProblems) report.renamedUsers.push({ position: row.position, django: row.spelled, tessera: row.username })
              }
            }
          }
        }
        let batch: GoodRow[] = []
        let renamed: GoodRow[] = []
        // One batch is written while the next is read: the import takes the
        // longer of parsing and writing, not their sum, and holds two batches.
        let writing: Promise<void> = Promise.resolve()
        const write = async (work: () => Promise<void>): Promise<void> => {
          await writing
          writing = work()
          // Its failure surfaces at the next await; until then it must not count as unhandled.
          writing.catch(() => {})
        }
        try {
          for await (const record of records) {
            report.read++
            const checked = checkRecord(record)
            if ('reason' in checked) {
              problem(checked)
              const kept = nameKeptBy(record)
              if (kept !== undefined) batch.push(kept)
            } else if (checked.spelled === undefined) {
              batch.push(checked)
            } else {
              renamed.push(checked)
            }
            if (batch.length >= batchSize) {
              const full = batch
              await write(async () => { await flush(full) })
              batch = []
            }
            if (renamed.length >= batchSize) {
              const full = renamed
              await write(async () => { await deferBatch(conn, full) })
              renamed = []
            }
          }
        } catch (err) {
          // The batches being read are dropped with the unreadable rest, and so
          // are the renamed rows: the rest of the file may hold their exact
          // spelling. A re-run with the whole file completes the import.
          if (!(err instanceof ImportFileError)) throw err
          report.error = err.message
          batch = []
        } finally {
          await writing
        }
        if (batch.length > 0) await flush(batch)
        if (report.error === undefined) {
          if (renamed.length > 0) await deferBatch(conn, renamed)
          for await (const rows of deferredRows(conn, batchSize)) await flush(rows)
        }
      } finally {
        await sql`DROP TABLE IF EXISTS pg_temp.import_seen, pg_temp.import_deferred`.execute(conn)
        await sql`SELECT pg_advisory_unlock(${USERS_IMPORT_LOCK})`.execute(conn)
      }
    })
  } catch (err) {
    // The batches written before the failure are committed: the report says how many, for the audit.
    throw new ImportInterruptedError(report, err)
  }
  // Renamed rows are judged last: their problems go back in file order.
  report.problems.sort((a, b) => a.position - b.position)
  report.renamedUsers.sort((a, b) => a.position - b.position)
  return report
}

/** The audit row of a finished import: counts only, never a hash. */
export async function recordImport (db: Db, report: ImportReport, options: { format: ImportFormat, complete: boolean }): Promise<void> {
  await recordAudit(db, {
    type: 'users.imported',
    actor: 'operator',
    userAgent: 'tessera-cli',
    detail: {
      format: options.format,
      complete: options.complete,
      read: report.read,
      created: report.created,
      existing: report.existing,
      duplicates: report.duplicates,
      problems: report.problemCount,
      disabled: report.disabled,
      unusable: report.unusable,
      renamed: report.renamed
    }
  })
}
