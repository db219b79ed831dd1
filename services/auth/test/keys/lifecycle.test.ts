/**
 * The key lifecycle as domain operations on a real database with an injected
 * clock: every transition happens when it is due and not a second earlier.
 */
import { randomBytes } from 'node:crypto'
import { calculateJwkThumbprint } from 'jose'
import { sql } from 'kysely'
import t from 'tap'
import type { Test } from 'tap'
import { keyTickSeconds } from '../../src/jobs.js'
import { advanceKeys, VERIFIER_LEEWAY } from '../../src/keys/advance.js'
import type { KeyMaking } from '../../src/keys/transitions.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { WrongKekError } from '../../src/keys/kek.js'
import { Keyring } from '../../src/keys/keyring.js'
import { loadKeyring } from '../../src/keys/load.js'
import { singleFlight } from '../../src/util/single-flight.js'
import { revokeKey, UnknownKeyError } from '../../src/keys/revoke-key.js'
import { rewrapKeys, SameKekError } from '../../src/keys/rewrap.js'
import { rotateKeys } from '../../src/keys/rotate.js'
import type { Config } from '../../src/config.js'
import type { Db } from '../../src/db/database.js'
import { buildTestApp, login, refresh, refuseRejectedKey, signUp } from '../helpers/app.js'

const OPERATOR = { actor: 'operator' }
const at = (base: Date, seconds: number): Date => new Date(base.getTime() + seconds * 1000)

async function keyRow (db: Db, kid: string) {
  return await db.selectFrom('signing_keys').selectAll().where('kid', '=', kid).executeTakeFirst()
}

async function auditTypes (db: Db, kid: string): Promise<string[]> {
  return (await db.selectFrom('audit_events').select('type').where('kid', '=', kid).orderBy('id').execute()).map((r) => r.type)
}

const kidOf = (jwt: string): string => (JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid

t.test('rotate publishes a next key, refuses a second, --now promotes it', async (t) => {
  const { deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  const first = deps.keyring.signer?.kid ?? ''
  const now = new Date()

  const created = await rotateKeys(deps.db, making, { immediate: false, clock: () => now, who: OPERATOR })
  t.ok(created.created, 'a key was made')
  t.equal(created.promoted, undefined, 'it does not sign yet')
  t.equal((await keyRow(deps.db, created.created ?? ''))?.state, 'next')

  const again = await rotateKeys(deps.db, making, { immediate: false, clock: () => now, who: OPERATOR })
  t.same(again, { created: undefined, promoted: undefined, demoted: undefined, pending: created.created, promotedPublishedAt: undefined }, 'says a key is pending and changes nothing')
  t.equal((await deps.db.selectFrom('signing_keys').select('kid').execute()).length, 2)

  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.same([...deps.keyring.jwks.kids].sort(), [first, created.created].sort(), 'the next key is published')
  t.equal(deps.keyring.signer?.kid, first, 'the old key still signs')
  const etag = deps.keyring.jwks.etag

  const now2 = at(now, 1)
  const promoted = await rotateKeys(deps.db, making, { immediate: true, clock: () => now2, who: OPERATOR })
  t.same(promoted, { created: undefined, promoted: created.created, demoted: first, pending: undefined, promotedPublishedAt: now }, 'the pending key, published a second before it signed')
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.equal(deps.keyring.signer?.kid, created.created)
  t.equal(deps.keyring.jwks.etag, etag, 'promotion does not change the published set, so the JWKS (and its ETag) stay the same')
  const old = await keyRow(deps.db, first)
  t.equal(old?.state, 'previous')
  t.same(old?.demoted_at, now2)
  t.same(await auditTypes(deps.db, first), ['key.created', 'key.promoted', 'key.demoted'])
  t.same(await auditTypes(deps.db, created.created ?? ''), ['key.created', 'key.promoted'])

  const fresh = await rotateKeys(deps.db, making, { immediate: true, clock: () => at(now, 2), who: OPERATOR })
  t.ok(fresh.created, '--now without a pending key makes one')
  t.equal(fresh.promoted, fresh.created)
  t.equal(fresh.demoted, created.created)
})

t.test('TESSERA_KEY_BITS sizes every key made: the first, a rotation\'s; each kid the RFC 7638 thumbprint of what the JWKS publishes', async (t) => {
  // No key of this size is made ahead for the tests: the app generates its first one as a served instance does.
  const { deps, kek, config } = await buildTestApp(t, { TESSERA_KEY_BITS: '3072' })
  const first = deps.keyring.signer?.kid ?? ''
  const rotated = await rotateKeys(deps.db, { kek, bits: config.keyBits }, { immediate: true, clock: () => new Date(), who: OPERATOR })
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  const published = (JSON.parse(deps.keyring.jwks.body) as { keys: Array<{ kid: string, n: string, e: string }> }).keys
  t.same(published.map((k) => k.kid).sort(), [first, rotated.promoted].sort(), 'the first key and the rotation\'s')
  for (const jwk of published) {
    t.equal(Buffer.from(jwk.n, 'base64url').length * 8, 3072, `${jwk.kid}: a 3072-bit modulus`)
    t.equal(await calculateJwkThumbprint({ kty: 'RSA', n: jwk.n, e: jwk.e }, 'sha256'), jwk.kid, `${jwk.kid}: its kid is its thumbprint`)
    t.equal((await keyRow(deps.db, jwk.kid))?.bits, 3072, `${jwk.kid}: listed as 3072 bits`)
  }
  t.equal(deps.keyring.signer?.privateKey.asymmetricKeyDetails?.modulusLength, 3072, 'the signer\'s private half is that size too')
})

t.test('the timer promotes after the lead and rotates on schedule, never early', async (t) => {
  const { deps, kek, config } = await buildTestApp(t, { TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '10s', TESSERA_KEY_ROTATION: '60s' })
  const making = { kek, bits: config.keyBits }
  const first = await keyRow(deps.db, deps.keyring.signer?.kid ?? '')
  const p = first?.promoted_at ?? new Date()

  t.same(await advanceKeys(deps.db, making, config, at(p, 49)), [], 'nothing before rotation − lead')
  const made = await advanceKeys(deps.db, making, config, at(p, 50))
  t.equal(made?.length, 1)
  t.equal(made?.[0]?.kind, 'created')
  const next = made?.[0]?.kid ?? ''
  t.same(await advanceKeys(deps.db, making, config, at(p, 59)), [], 'the next key waits for the lead')
  t.same(await advanceKeys(deps.db, making, config, at(p, 60)), [{ kind: 'promoted', kid: next }], 'signs one rotation period after the last one started')
  t.equal((await keyRow(deps.db, first?.kid ?? ''))?.state, 'previous')
  t.same(await advanceKeys(deps.db, making, config, at(p, 60)), [], 'idempotent')
})

t.test('the metric of the next rotation names the moment the timer really promotes', async (t) => {
  const sinceNow = async (metrics: ReturnType<typeof createMetrics>): Promise<number | undefined> => {
    const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith('tessera_signing_key_next_rotation_seconds '))
    return line === undefined ? undefined : Number(line.split(' ')[1])
  }
  // Each case: the metric's answer at `asked`, then the timer run one second before and at that moment.
  const check = async (t: Test, env: Record<string, string>, pending: (db: Db, making: KeyMaking, config: Config, p: Date) => Promise<unknown>, asked: number): Promise<void> => {
    const { deps, kek, config } = await buildTestApp(t, { TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '10s', ...env })
    const making = { kek, bits: config.keyBits }
    const p = (await keyRow(deps.db, deps.keyring.signer?.kid ?? ''))?.promoted_at ?? new Date()
    await pending(deps.db, making, config, p)
    await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
    const next = deps.keyring.keys.find((k) => k.state === 'next')?.kid
    t.ok(next, 'a next key waits')
    const metrics = createMetrics({ keyring: deps.keyring, keyRotation: config.keyRotation, keyPublishLead: config.keyPublishLead, clock: () => at(p, asked), processMetrics: false })
    const signsIn = await sinceNow(metrics) ?? NaN
    t.ok(signsIn > 0, `not overdue (${signsIn})`)
    t.same(await advanceKeys(deps.db, making, config, at(p, asked + signsIn - 1)), [], 'nothing a second before')
    t.same(await advanceKeys(deps.db, making, config, at(p, asked + signsIn)), [{ kind: 'promoted', kid: next }], 'promoted then')
  }
  t.test('a rotation shorter than the lead: the lead wins (docs/decisions.md)', async (t) => {
    await check(t, { TESSERA_KEY_ROTATION: '4s' }, async (db, making, config, p) => await advanceKeys(db, making, config, p), 5)
  })
  t.test('a next key made by hand late in the period signs a lead after it was published, not at the schedule', async (t) => {
    await check(t, { TESSERA_KEY_ROTATION: '60s' }, async (db, making, _config, p) => await rotateKeys(db, making, { immediate: false, clock: () => at(p, 55), who: OPERATOR }), 56)
  })
})

t.test('two timers at once make one key', async (t) => {
  const { deps, kek, config } = await buildTestApp(t, { TESSERA_JWKS_MAX_AGE: '1s', TESSERA_KEY_CHECK_INTERVAL: '1s', TESSERA_KEY_PUBLISH_LEAD: '10s', TESSERA_KEY_ROTATION: '60s' })
  const making = { kek, bits: config.keyBits }
  const when = at(new Date(), 3600)
  const results = await Promise.all([1, 2, 3].map(async () => await advanceKeys(deps.db, making, config, when)))
  t.equal(results.flatMap((r) => r ?? []).filter((x) => x.kind === 'created').length, 1)
  t.equal((await deps.db.selectFrom('audit_events').select('id').where('type', '=', 'key.created').execute()).length, 2, 'the first key and one more')
})

t.test('a demoted key: private half erased after the grace, retired after access TTL + leeway, deleted after its refresh tokens expire', async (t) => {
  const { app, deps, kek, config, advance } = await buildTestApp(t, {
    TESSERA_ACCESS_TTL: '60s', TESSERA_REFRESH_TTL: '1h', TESSERA_REFRESH_GRACE: '10s', TESSERA_KEY_ROTATION: 'off'
  })
  const making = { kek, bits: config.keyBits }
  await signUp(app, 'erin', 'correct horse battery')
  const tokens = await login(app, 'erin', 'correct horse battery')
  const k1 = kidOf(tokens.refresh_token)
  const t0 = deps.clock()
  const rotated = await rotateKeys(deps.db, making, { immediate: true, clock: () => t0, who: OPERATOR })
  const k2 = rotated.promoted ?? ''

  // This instance has not heard of the rotation yet: it still signs with k1, 5 s after k1 stopped signing elsewhere.
  advance(5)
  const lagging = await refresh(app, tokens.refresh_token)
  t.equal(lagging.status, 200)
  const r2 = String(lagging.body.refresh_token)
  t.equal(kidOf(r2), k1)

  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  const etag = deps.keyring.jwks.etag
  t.same(await advanceKeys(deps.db, making, config, at(t0, 12)), [], 'a refresh token k1 signed 7 s ago may still be re-presented: keep its private half')
  t.same(await advanceKeys(deps.db, making, config, at(t0, 17)), [{ kind: 'private_erased', kid: k1 }])
  const erased = await keyRow(deps.db, k1)
  t.equal(erased?.private_key_enc, null)
  t.ok(erased?.private_erased_at)
  t.equal(erased?.state, 'previous', 'still published: access tokens it signed are live')

  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.equal(deps.keyring.privateKey(k1), undefined, 'dropped from memory')
  t.equal(deps.keyring.signer?.kid, k2)
  t.equal(deps.keyring.jwks.etag, etag, 'the published set did not change, so neither did the JWKS')

  const retireAt = config.accessTtl + VERIFIER_LEEWAY
  t.same(await advanceKeys(deps.db, making, config, at(t0, retireAt - 1)), [])
  t.same(await advanceKeys(deps.db, making, config, at(t0, retireAt)), [{ kind: 'retired', kid: k1 }])
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.notOk(deps.keyring.jwks.kids.includes(k1), 'unpublished')
  t.not(deps.keyring.jwks.etag, etag)
  t.equal(deps.keyring.accessVerificationKey(k1), undefined)
  t.ok(deps.keyring.refreshVerificationKey(k1), 'its refresh tokens still verify')

  advance(retireAt)
  const later = await refresh(app, r2)
  t.equal(later.status, 200, 'a refresh token signed by a retired key still works')
  t.equal(kidOf(String(later.body.refresh_token)), k2)

  t.same(await advanceKeys(deps.db, making, config, at(t0, 3000)), [], 'kept while a refresh token it signed is unexpired')
  t.same(await advanceKeys(deps.db, making, config, at(t0, 3606)), [{ kind: 'deleted', kid: k1 }])
  t.equal(await keyRow(deps.db, k1), undefined)
  t.same(await auditTypes(deps.db, k1), ['key.created', 'key.promoted', 'key.demoted', 'key.private_erased', 'key.retired', 'key.deleted'])
})

t.test('revoke: out of the JWKS, sessions ended, a new signer at once', async (t) => {
  const { app, deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  await signUp(app, 'rita', 'correct horse battery')
  const tokens = await login(app, 'rita', 'correct horse battery')
  const k1 = kidOf(tokens.access_token)
  const pending = await rotateKeys(deps.db, making, { immediate: false, clock: () => new Date(), who: OPERATOR })
  const me = async (): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${tokens.access_token}` } })).statusCode
  t.equal(await me(), 200, 'the access token is verified, and remembered')

  const outcome = await revokeKey(deps.db, making, { kid: k1, clock: () => new Date(), who: OPERATOR })
  t.same(outcome, { kid: k1, was: 'current', sessionsEnded: 1, promoted: pending.created, promotedPublishedAt: (await keyRow(deps.db, pending.created ?? ''))?.published_at, promotedCreated: false })
  const row = await keyRow(deps.db, k1)
  t.equal(row?.state, 'revoked')
  t.equal(row?.private_key_enc, null)
  t.ok(row?.unpublished_at)
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.notOk(deps.keyring.jwks.kids.includes(k1))
  t.equal(deps.keyring.signer?.kid, pending.created)
  t.equal(await me(), 401, 'its access tokens are refused from the reload on')
  const refused = await refresh(app, tokens.refresh_token)
  t.equal(refused.status, 400)
  t.equal(refused.body.error, 'invalid_grant')

  t.same(await revokeKey(deps.db, making, { kid: k1, clock: () => new Date(), who: OPERATOR }), { kid: k1, was: 'revoked', sessionsEnded: 0, promoted: undefined, promotedPublishedAt: undefined, promotedCreated: false }, 'again: nothing changes')
  await t.rejects(revokeKey(deps.db, making, { kid: 'nope', clock: () => new Date(), who: OPERATOR }), UnknownKeyError)

  const replaced = await revokeKey(deps.db, making, { kid: pending.created ?? '', clock: () => new Date(), who: OPERATOR })
  t.ok(replaced.promoted, 'no next key pending: a new one is made and signs')
  t.not(replaced.promoted, pending.created)
  t.equal(replaced.promotedCreated, true)
})

t.test('revoke: a session an instance started with the key before it reloaded is ended by the schedule, once every instance must have reloaded', async (t) => {
  const { app, deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  await signUp(app, 'vera', 'correct horse battery')
  const k1 = (await rotateKeys(deps.db, making, { immediate: true, clock: () => new Date(), who: OPERATOR })).created ?? ''
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.equal((await revokeKey(deps.db, making, { kid: k1, clock: () => new Date(), who: OPERATOR })).sessionsEnded, 0, 'it had signed nothing yet')
  const { revoked_at: revokedAt } = await deps.db.selectFrom('signing_keys').select('revoked_at').where('kid', '=', k1).executeTakeFirstOrThrow()
  if (revokedAt === null) throw new Error('not revoked')

  // This instance has not reloaded its keyring yet (its notification or its own timer is still to come): it signs with k1.
  const late = await login(app, 'vera', 'correct horse battery')
  t.equal(kidOf(late.refresh_token), k1, 'a session started after the revoke, with its key')
  const live = async (): Promise<string[]> => (await deps.db.selectFrom('sessions').select('id').where('revoked_at', 'is', null).execute()).map((s) => s.id)
  t.equal((await live()).length, 1)

  const due = config.keyCheckInterval + 60
  await advanceKeys(deps.db, making, config, at(revokedAt, due - 1))
  t.equal((await live()).length, 1, 'left while an instance may still be signing with the key')
  await advanceKeys(deps.db, making, config, at(revokedAt, due))
  t.same(await live(), [], 'ended once every instance has reloaded')
  const ended = await deps.db.selectFrom('audit_events').select(['actor', 'kid', 'detail']).where('type', '=', 'session.ended').execute()
  t.same(ended.map((e) => [e.actor, e.kid, (e.detail as { reason?: string }).reason]), [['system', k1, 'key_revoked']], 'audited as the revoke\'s own endings are')
  const swept = await deps.db.selectFrom('signing_keys').select('sessions_swept_at').where('kid', '=', k1).executeTakeFirstOrThrow()
  t.ok(swept.sessions_swept_at !== null, 'and the key is marked swept, so the schedule does not look again')
  t.equal((await refresh(app, late.refresh_token)).status, 400, 'its refresh token stays refused')
})

t.test('a sweep of a revoked key\'s sessions that fails holds back no promotion: it runs after the transitions, on its own', async (t) => {
  const { deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  const k1 = (await rotateKeys(deps.db, making, { immediate: true, clock: () => new Date(), who: OPERATOR })).created ?? ''
  await revokeKey(deps.db, making, { kid: k1, clock: () => new Date(), who: OPERATOR })
  const next = (await rotateKeys(deps.db, making, { immediate: false, clock: () => new Date(), who: OPERATOR })).created ?? ''
  // A sweep that cannot run (here its column is gone; in production, a statement past the key work's timeout).
  await sql`ALTER TABLE signing_keys DROP COLUMN sessions_swept_at`.execute(deps.db)
  const later = at(new Date(), Math.max(config.keyPublishLead, config.keyCheckInterval + 60) + 1)
  await t.rejects(advanceKeys(deps.db, making, config, later), 'the sweep fails')
  const { state } = await deps.db.selectFrom('signing_keys').select('state').where('kid', '=', next).executeTakeFirstOrThrow()
  t.equal(state, 'current', 'and the pending key was promoted all the same')
})

t.test('revoke with a wrong KEK: refused before anything changes when a new signer must be sealed; a pending next key needs no KEK', async (t) => {
  const { app, deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  const wrong = { ...making, kek: randomBytes(32) }
  await signUp(app, 'sam', 'correct horse battery')
  const tokens = await login(app, 'sam', 'correct horse battery')
  const k1 = kidOf(tokens.access_token)
  const before = await deps.db.selectFrom('signing_keys').selectAll().orderBy('kid').execute()
  t.equal(before.length, 1, 'the signer is the only key, so the only sealed one')

  await t.rejects(revokeKey(deps.db, wrong, { kid: k1, clock: () => new Date(), who: OPERATOR }), WrongKekError)
  t.same(await deps.db.selectFrom('signing_keys').selectAll().orderBy('kid').execute(), before, 'the key still signs, its private half kept, no key made')
  t.same(await auditTypes(deps.db, k1), ['key.created', 'key.promoted'], 'nothing audited')
  t.equal((await refresh(app, tokens.refresh_token)).status, 200, 'its session was not ended')

  const pending = await rotateKeys(deps.db, making, { immediate: false, clock: () => new Date(), who: OPERATOR })
  const revoked = await revokeKey(deps.db, wrong, { kid: k1, clock: () => new Date(), who: OPERATOR })
  t.same(revoked.promoted, pending.created, 'with a next key pending, nothing is sealed: the revoke goes through and the next key signs')
  await loadKeyring(deps.db, kek, deps.keyring, { onRejectedKey: refuseRejectedKey })
  t.equal(deps.keyring.signer?.kid, pending.created, 'under the KEK every instance has')
})

t.test('rewrap: all or nothing, and the old KEK stops working', async (t) => {
  const { deps, kek, config } = await buildTestApp(t)
  const making = { kek, bits: config.keyBits }
  await rotateKeys(deps.db, making, { immediate: false, clock: () => new Date(), who: OPERATOR })
  const newKek = randomBytes(32)
  const before = await deps.db.selectFrom('signing_keys').select(['kid', 'private_key_enc']).orderBy('kid').execute()

  await t.rejects(rewrapKeys(deps.db, randomBytes(32), newKek, OPERATOR), WrongKekError)
  t.same(await deps.db.selectFrom('signing_keys').select(['kid', 'private_key_enc']).orderBy('kid').execute(), before, 'nothing changed')
  await t.rejects(rewrapKeys(deps.db, kek, Buffer.from(kek), OPERATOR), SameKekError)

  const kids = await rewrapKeys(deps.db, kek, newKek, OPERATOR)
  t.same(kids.sort(), before.map((k) => k.kid).sort())
  await t.rejects(loadKeyring(deps.db, kek, new Keyring(), { onRejectedKey: refuseRejectedKey }), WrongKekError, 'the old KEK is refused')
  const fresh = new Keyring()
  await loadKeyring(deps.db, newKek, fresh, { onRejectedKey: refuseRejectedKey })
  t.ok(fresh.signer, 'the new KEK opens them')

  const wrong: string[] = []
  const stale = new Keyring()
  await loadKeyring(deps.db, kek, stale, { onRejectedKey: refuseRejectedKey, onWrongKek: (err) => wrong.push(err.kid) })
  t.equal(wrong.length, 2, 'a running instance with the old KEK reloads without the private halves')
  t.equal(stale.signer, undefined)
  await rotateKeys(deps.db, { ...making, kek: newKek }, { immediate: true, clock: () => new Date(), who: OPERATOR })
  await t.rejects(rotateKeys(deps.db, making, { immediate: false, clock: () => new Date(), who: OPERATOR }), WrongKekError, 'and cannot seal a new key under the old KEK')
  t.ok((await rotateKeys(deps.db, { ...making, kek: newKek }, { immediate: false, clock: () => new Date(), who: OPERATOR })).created !== undefined, 'the new KEK can')
})

t.test('the key timer is fine enough for short settings', async (t) => {
  t.equal(keyTickSeconds({ keyCheckInterval: 30, keyPublishLead: 600, keyRotation: 30 * 86400, refreshGrace: 10 }), 5)
  t.equal(keyTickSeconds({ keyCheckInterval: 30, keyPublishLead: 2, keyRotation: 3, refreshGrace: 1 }), 0.5)
  t.equal(keyTickSeconds({ keyCheckInterval: 30, keyPublishLead: 0, keyRotation: null, refreshGrace: 0 }), 30)
  t.equal(keyTickSeconds({ keyCheckInterval: 1, keyPublishLead: 0.1, keyRotation: null, refreshGrace: 0 }), 0.25)
})

t.test('reloads coalesce', async (t) => {
  let runs = 0
  let release: () => void = () => {}
  const reload = singleFlight(async () => { runs++; await new Promise<void>((resolve) => { release = resolve }) })
  const first = reload()
  const second = reload()
  const third = reload()
  release()
  await new Promise((resolve) => setImmediate(resolve))
  release()
  await Promise.all([first, second, third])
  t.equal(runs, 2, 'one run, and one more for the calls that came during it')
})
