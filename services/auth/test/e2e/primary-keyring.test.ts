/**
 * The primary's own keyring is what a worker it forks starts from
 * (keys/share.ts). A reload of it that fails while the workers' succeed (the
 * database slow or silent for the primary's bounded key work alone) must not
 * leave it behind until the periodic backstop: a worker recycled meanwhile
 * would publish, and sign with, a key revoked since.
 */
import { sql } from 'kysely'
import t from 'tap'
import { KEYS_CHANNEL } from '../../src/keys/transitions.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { jwksKids, kidOf, loginOver, signUpOver, within } from '../helpers/http.js'
import { keyLifecycleEnv, runCli, startServer } from '../helpers/server.js'

const PASSWORD = 'correct horse battery'

t.test('a key change the primary failed to reload (its 10 s key statement timeout) is retried, so a worker recycled after it starts from the new set, not one that still signs with a revoked key', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  // The backstop far off, so only a retry can catch the primary up; the workers' statements may wait longer than the key work's 10 s.
  const env = keyLifecycleEnv(databaseUrl, { TESSERA_WORKERS: '1', TESSERA_KEY_ROTATION: 'off', TESSERA_KEY_PUBLISH_LEAD: '15m', TESSERA_KEY_CHECK_INTERVAL: '10m', TESSERA_DB_STATEMENT_TIMEOUT_MS: '25000', TESSERA_METRICS_PORT: '0' })
  const server = await startServer(t, env)
  const [k1] = await jwksKids(server.url)
  const rotated = await runCli(['keys', 'rotate', '--json'], env)
  const k2 = String((JSON.parse(rotated.stdout) as { created: string }).created)
  t.ok(await within(5000, async () => (await jwksKids(server.url)).includes(k2)) !== undefined, 'the next key is published')

  // A revoke of the signer as `keys revoke` leaves it, made under a lock on signing_keys that every reload waits on.
  const { pool, db } = await testConnection(t, databaseUrl)
  const holder = await pool.connect()
  t.teardown(() => { holder.release(true) })
  await holder.query('BEGIN')
  await holder.query('LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE')
  await holder.query('UPDATE signing_keys SET state = \'revoked\', revoked_at = now(), unpublished_at = now(), private_key_enc = NULL, private_erased_at = now() WHERE kid = $1', [k1])
  await holder.query('UPDATE signing_keys SET state = \'current\', promoted_at = now() WHERE kid = $1', [k2])
  await sql`SELECT pg_notify(${KEYS_CHANNEL}, ${`revoked ${String(k1)}`})`.execute(db)
  const reloadFailed = (): boolean => server.output().includes('"msg":"keyring reload failed"')
  t.ok(await within(30_000, async () => reloadFailed(), 100) !== undefined, 'the primary\'s reload fails at its statement timeout')
  // The worker, told after that failure, reloads on its own connection once the lock is gone.
  await holder.query('COMMIT')
  t.ok(await within(20_000, async () => !(await jwksKids(server.url)).includes(k1 ?? ''), 100) !== undefined, 'the worker no longer publishes the revoked key')

  // The primary's scrape counts the keys its own keyring holds (the worker's, with one fewer state, are aggregated by max): a pending `next` key there is the set from before the revoke.
  const metricsUrl = /"metrics":"([^"]+)"[^\n]*"msg":"tessera is serving"/.exec(server.output())?.[1] ?? 'no metrics listener was logged'
  const primaryHoldsNext = async (): Promise<boolean> => /^tessera_signing_keys\{state="next"\} [1-9]/m.test(await (await fetch(metricsUrl)).text())
  t.ok(await within(20_000, async () => !(await primaryHoldsNext()), 100) !== undefined, 'the primary catches up without waiting for the backstop (10 min away)')

  // Recycle the worker (SIGTERM to its pid alone): the primary forks another from its own keyring.
  // From a request line, which the worker writes after its answer: waited for, since a pid of 0 would signal this test's own process group.
  const requestLine = (await server.logOf(1, (line) => line.includes('"msg":"request"'))).at(-1)
  const worker = Number(/"pid":(\d+)/.exec(requestLine ?? '')?.[1])
  if (!(worker > 0)) throw new Error(`no worker pid in ${String(requestLine)}`)
  process.kill(worker, 'SIGTERM')
  const recycled = async (): Promise<boolean> => {
    if (!server.output().includes('"msg":"an HTTP worker exited; starting another"')) return false
    try {
      return (await fetch(`${server.url}/healthz`)).status === 200
    } catch {
      return false // between the old worker's exit and the new one's listen
    }
  }
  t.ok(await within(20_000, recycled, 100) !== undefined, 'a new worker serves')
  t.same(await jwksKids(server.url), [k2], 'the new worker publishes only the key that signs now')
  await signUpOver(server.url, 'kim', PASSWORD)
  t.equal(kidOf((await loginOver(server.url, 'kim', PASSWORD)).access_token), k2, 'and signs with it, not with the revoked key')
})
