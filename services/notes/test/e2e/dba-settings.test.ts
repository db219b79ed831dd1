/**
 * notes on a database whose defaults a DBA changed (ALTER DATABASE … SET, as
 * ALTER ROLE … SET would): its connections set what its routes rely on
 * (db.ts, connect). Each test sets them on its own database.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { connect, migrate } from '../../src/db.js'
import { createTestDatabase, forge } from '../helpers.js'

interface Tuned { app: App, url: string, admin: pg.Client, headers: Record<string, string> }

/** notes on a database with these defaults, and a superuser connection to it (which takes them too). */
async function tunedNotes (t: Test, settings: Record<string, string>): Promise<Tuned> {
  const url = await createTestDatabase(t)
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  for (const [name, value] of Object.entries(settings)) await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET ${name} = ${value}`)
  const config = loadConfig({ DATABASE_URL: url })
  const db = connect(url)
  t.teardown(async () => { await db.destroy() })
  await migrate(db)
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const app = await buildApp(config, { db, logger: pino({ level: 'silent' }), keys: async () => pem })
  t.teardown(async () => { await app.close() })
  const now = Math.floor(Date.now() / 1000)
  const token = forge({ alg: 'RS256', typ: 'at+jwt', kid: 'local' }, { iss: config.issuer, aud: config.audience, sub: randomUUID(), scope: 'notes:read notes:write', iat: now, exp: now + 600 },
    (data) => sign('sha256', Buffer.from(data), privateKey))
  // A fresh connection: the settings apply to sessions started after them.
  const fresh = new pg.Client({ connectionString: url })
  await fresh.connect()
  t.teardown(async () => { await fresh.end() })
  return { app, url, admin: fresh, headers: { authorization: `Bearer ${token}` } }
}

/**
 * The app's DELETE of a note while another transaction holds the note's row
 * (and runs `holderWork` on it), let go well past a short lock_timeout: the
 * app's answer.
 */
async function deleteWhileHeld ({ app, url, admin, headers }: Tuned, t: Test, holderWork: string): Promise<LightMyRequestResponse> {
  const note = (await app.inject({ method: 'POST', url: '/notes', headers, payload: { text: 'held' } })).json<{ id: string }>()
  const watcher = new pg.Client({ connectionString: url })
  await watcher.connect()
  t.teardown(async () => { await watcher.end() })
  await admin.query('BEGIN')
  await admin.query(holderWork, [note.id])
  // Answered before it was seen waiting (a lock_timeout shorter than the first look), it stops the looking.
  const request = { answered: false }
  const deleted = app.inject({ method: 'DELETE', url: `/notes/${note.id}`, headers }).finally(() => { request.answered = true })
  const waiting = async (): Promise<boolean> => (await watcher.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0]?.n !== 0
  while (!request.answered && !await waiting()) await sleep(20)
  // Still waiting, so far past 50 ms that a lock_timeout of 50 ms would have ended it, then let through.
  await sleep(300)
  await admin.query('COMMIT')
  return await deleted
}

t.test("DateStyle 'SQL, DMY' and a far time zone: POST and GET /notes answer, with created_at the instant written", async (t) => {
  const { app, admin, headers } = await tunedNotes(t, { DateStyle: "'SQL, DMY'", TimeZone: "'Pacific/Chatham'" })
  const created = await app.inject({ method: 'POST', url: '/notes', headers, payload: { text: 'dated' } })
  t.equal(created.statusCode, 201, created.body)
  const note = created.json<{ id: string, created_at: string }>()
  const { rows: [stored] } = await admin.query<{ ms: string }>('SELECT floor(extract(epoch FROM created_at) * 1000)::text AS ms FROM notes.notes WHERE id = $1', [note.id])
  // Within 1 ms: node-postgres multiplies the microseconds as a float, and 0.287 * 1000 is 286.99999999999994.
  t.ok(Math.abs(Date.parse(note.created_at) - Number(stored?.ms)) <= 1, `${note.created_at} is the instant stored (${String(stored?.ms)} ms), not shifted by Chatham's offset`)
  const listed = await app.inject({ method: 'GET', url: '/notes', headers })
  t.equal(listed.statusCode, 200, listed.body)
  t.same(listed.json<{ notes: unknown[] }>().notes, [{ id: note.id, text: 'dated', created_at: note.created_at }])
})

t.test('default_transaction_isolation serializable: a DELETE racing another of the same note answers 404, as under read committed', async (t) => {
  const deleted = await deleteWhileHeld(await tunedNotes(t, { default_transaction_isolation: "'serializable'" }), t, 'DELETE FROM notes.notes WHERE id = $1')
  t.equal(deleted.statusCode, 404, deleted.body)
})

t.test('lock_timeout 50ms: a DELETE waits for the note\'s row lock, bounded by notes\' statement timeout only', async (t) => {
  const deleted = await deleteWhileHeld(await tunedNotes(t, { lock_timeout: "'50ms'" }), t, 'SELECT 1 FROM notes.notes WHERE id = $1 FOR UPDATE')
  t.equal(deleted.statusCode, 204, deleted.body)
})
