import { createHash, randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import pg from 'pg'

/** What a test runner offers to run after the test: tap's `t.teardown`. */
export interface Teardown { teardown: (fn: () => Promise<void>) => void }

/** The server and the migrated template that scripts/with-test-db.mjs prepared for this run. */
export function testDatabaseEnv (): { adminUrl: string, template: string, prefix: string } {
  const adminUrl = process.env.TESSERA_TEST_ADMIN_URL
  const template = process.env.TESSERA_TEST_TEMPLATE
  const prefix = process.env.TESSERA_TEST_PREFIX
  if (adminUrl === undefined || template === undefined || prefix === undefined) {
    throw new Error('run the tests through `make test` or `make test-fast` (scripts/with-test-db.mjs provides the database)')
  }
  return { adminUrl, template, prefix }
}

/**
 * Every database of one run of scripts/with-test-db.mjs starts with the run's
 * prefix: this machine and the run's process id. Two runs may share a server
 * (a second run in the same checkout adopts the first one's embedded Postgres;
 * worktrees may name one DATABASE_URL), so a run drops only its own databases
 * and those whose run has died, never a live run's.
 */
export function runPrefix (pid: number = process.pid): string {
  return `tessera_t_${machineTag()}_${pid}_`
}

/** The template a run's test databases are cloned from. */
export function runTemplate (prefix: string): string {
  return `${prefix}template`
}

/** Which run made a test database: the machine and process id in its name; undefined for any other name. */
export function runOf (datname: string): { machine: string, pid: number } | undefined {
  const match = /^tessera_t_([0-9a-f]{8})_([0-9]+)_/.exec(datname)
  if (match === null) return undefined
  return { machine: match[1] as string, pid: Number(match[2]) }
}

/** A short tag of this machine's name: a process id means something only on the machine that gave it. */
function machineTag (): string {
  return createHash('sha256').update(hostname()).digest('hex').slice(0, 8)
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The test databases that are ours to drop: those of our own run, and those
 * of runs of this machine whose process is gone (an interrupted run). A live
 * run's, another machine's and any other database are left alone.
 */
function droppable (datnames: string[], ownPid: number = process.pid): string[] {
  return datnames.filter((datname) => {
    const run = runOf(datname)
    return run !== undefined && run.machine === machineTag() && (run.pid === ownPid || !isAlive(run.pid))
  })
}

async function admin (adminUrl: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try { return await client.query(sql) } finally { await client.end() }
}

/** The names of every test database on the server. */
export async function listTestDatabases (adminUrl: string): Promise<string[]> {
  const found = await admin(adminUrl, "SELECT datname FROM pg_database WHERE datname LIKE 'tessera\\_t\\_%' ORDER BY datname")
  return found.rows.map((row: { datname: string }) => row.datname)
}

/** Drops the test databases of our run and of dead runs (see `droppable`); returns their names. */
export async function dropStaleTestDatabases (adminUrl: string, ownPid: number = process.pid): Promise<string[]> {
  const names = droppable(await listTestDatabases(adminUrl), ownPid)
  for (const name of names) await admin(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  return names
}

/**
 * A database of its own for one test (a clone of the migrated template, or
 * `empty`), dropped at teardown; returns its URL. Cloning takes milliseconds,
 * so test files never share rows and can run in parallel.
 */
export async function createTestDatabase (t: Teardown, options: { empty?: boolean } = {}): Promise<string> {
  const { adminUrl, template, prefix } = testDatabaseEnv()
  const name = `${prefix}${randomBytes(6).toString('hex')}`
  await admin(adminUrl, options.empty === true ? `CREATE DATABASE "${name}"` : `CREATE DATABASE "${name}" TEMPLATE "${template}"`)
  t.teardown(async () => { await admin(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}
