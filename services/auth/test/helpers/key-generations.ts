/**
 * When a process generated RSA keys, and whether a transaction that stored a
 * key was open meanwhile: how a test shows that a key is generated before the
 * keys' lock (keys/transitions.ts, withKeyMadeAhead) from what happened, not
 * from how long it took. A 100 ms idle_in_transaction_session_timeout showed
 * it too, but also ended the connection of a process the machine left
 * unscheduled that long between two statements, under the right code.
 *
 * A generation is seen through node:async_hooks, not through a seam in src:
 * jose's generateKeyPair runs one node:crypto key-pair job per key
 * (KEYPAIRGENREQUEST); its start is the job's creation, its end the moment
 * its callback runs, before anything awaiting the key resumes. Loaded with
 * --import into a CLI process (cliKeyGenerations), this module writes each
 * finished generation to the file TESSERA_TEST_KEY_GENERATIONS names.
 *
 * A key's storing transaction is seen by a trigger the test adds to its own
 * database (recordKeyStores): when the transaction began (now()) and when it
 * wrote the key (clock_timestamp()), on the database's clock, which
 * databaseClockLead relates to this machine's.
 */
import { createHook } from 'node:async_hooks'
import { appendFileSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'

/** Milliseconds since the epoch on this machine's clock, as Date.now() reads it (whole ms, rounded down). */
export interface KeyGeneration { start: number, end: number }

/** Calls `done` with each key generation that finishes in this process from now on, until the returned function is called. */
export function watchKeyGenerations (done: (generation: KeyGeneration) => void): () => void {
  const started = new Map<number, number>()
  const hook = createHook({
    init (id, type) { if (type === 'KEYPAIRGENREQUEST') started.set(id, Date.now()) },
    before (id) {
      const start = started.get(id)
      if (start === undefined) return
      started.delete(id)
      done({ start, end: Date.now() })
    }
  }).enable()
  return () => { hook.disable() }
}

const LOG_ENV = 'TESSERA_TEST_KEY_GENERATIONS'
const logFile = process.env[LOG_ENV]
if (logFile !== undefined) watchKeyGenerations((generation) => { appendFileSync(logFile, `${JSON.stringify(generation)}\n`) })

/** The environment that makes a CLI process log its key generations to `file` (read back with readKeyGenerations). */
export function cliKeyGenerations (file: string): Record<string, string> {
  return { NODE_OPTIONS: `--import=${fileURLToPath(import.meta.url)}`, [LOG_ENV]: file }
}

export function readKeyGenerations (file: string): KeyGeneration[] {
  let text = ''
  try { text = readFileSync(file, 'utf8') } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err }
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as KeyGeneration)
}

/** A key's storing transaction, in ms since the epoch on the database's clock. */
export interface KeyStore { kid: string, began: number, stored: number }

/** Adds to the test's database a trigger that notes each key's storing transaction (a schema of the test's own, dropped with the database). */
export async function recordKeyStores (client: pg.ClientBase): Promise<void> {
  await client.query(`CREATE SCHEMA key_probe;
    CREATE TABLE key_probe.stores (kid text NOT NULL, began timestamptz NOT NULL, stored timestamptz NOT NULL);
    CREATE FUNCTION key_probe.note_store () RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO key_probe.stores VALUES (NEW.kid, now(), clock_timestamp()); RETURN NULL; END $$;
    CREATE TRIGGER key_probe_note_store AFTER INSERT ON public.signing_keys FOR EACH ROW EXECUTE FUNCTION key_probe.note_store()`)
}

export async function keyStores (client: pg.ClientBase): Promise<KeyStore[]> {
  const { rows } = await client.query<{ kid: string, began: string, stored: string }>(
    'SELECT kid, extract(epoch FROM began) * 1000 AS began, extract(epoch FROM stored) * 1000 AS stored FROM key_probe.stores ORDER BY stored')
  return rows.map((row) => ({ kid: row.kid, began: Number(row.began), stored: Number(row.stored) }))
}

/**
 * How far the database's clock is ahead of this machine's, in ms: between
 * `low` and `high`, read around one query (the narrowest of a few). The same
 * machine's Postgres has one clock with this one; DATABASE_URL may name
 * another's.
 */
export async function databaseClockLead (client: pg.ClientBase): Promise<{ low: number, high: number }> {
  let best = { low: -Infinity, high: Infinity }
  for (let i = 0; i < 5; i++) {
    const before = Date.now()
    const { rows } = await client.query<{ at: string }>('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS at')
    const after = Date.now()
    const at = Number(rows[0]?.at)
    // Date.now() rounds down: the query ran after `before` and before `after + 1`.
    const lead = { low: at - (after + 1), high: at - before }
    if (lead.high - lead.low < best.high - best.low) best = lead
  }
  return best
}

/**
 * The generations that certainly ran, at least in part, while a transaction
 * storing a key was open: started before it wrote the key and ended after it
 * began, whatever the two clocks' offset within `lead`. A key generated before
 * its transaction, as withKeyMadeAhead does, ends before the transaction's
 * BEGIN is sent; one generated inside it (the old createKey) overlaps by the
 * whole generation.
 */
export function generationsInsideStores (generations: KeyGeneration[], stores: KeyStore[], lead: { low: number, high: number }): Array<KeyGeneration & { kid: string }> {
  return stores.flatMap((store) => generations
    // start and end are whole ms, rounded down: the start was before start + 1.
    .filter((g) => g.start + 1 <= store.stored - lead.high && g.end > store.began - lead.low)
    .map((g) => ({ ...g, kid: store.kid })))
}
