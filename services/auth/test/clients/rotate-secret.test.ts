/**
 * `rotate-secret --keep-old` (replaceCurrentSecret) against the real
 * Postgres and the real token endpoint: after a rotation whose new secret
 * was lost, a new secret replaces the lost one while the old secret, which
 * the services still hold, keeps working; with no old secret in its grace
 * there is nothing to keep, and nothing changes.
 */
import { sql } from 'kysely'
import t from 'tap'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { within } from '../helpers/http.js'
import { createClient } from '../../src/clients/register.js'
import { replaceCurrentSecret, rotateClientSecret } from '../../src/clients/rotate-secret.js'
import { secretDigest } from '../../src/clients/secret.js'

const OPERATOR = { actor: 'operator' }

/** A confidential client `svc` whose secret was rotated with a grace of 60 s: `deployed` is the one its services hold, `lost` the one printed to no one. */
async function lostRotation (ctx: TestApp): Promise<{ deployed: string, lost: string, deadline: Date }> {
  const created = await createClient(ctx.deps.db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: [] }, ctx.deps.clock(), OPERATOR)
  const rotated = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 60, clock: ctx.deps.clock }, OPERATOR)
  if (created.secret === undefined || rotated.kind !== 'rotated' || rotated.previousExpiresAt === null) throw new Error('setup')
  return { deployed: created.secret, lost: rotated.secret, deadline: rotated.previousExpiresAt }
}

const tokenStatus = async (ctx: TestApp, secret: string): Promise<number> =>
  (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret } })).statusCode

/** The row as stored, the deadline to the microsecond (a Date holds milliseconds). */
async function row (ctx: TestApp): Promise<{ secret_digest: Buffer | null, previous_secret_digest: Buffer | null, expires: string | null, rotated: string | null }> {
  return (await sql<{ secret_digest: Buffer | null, previous_secret_digest: Buffer | null, expires: string | null, rotated: string | null }>`
    SELECT secret_digest, previous_secret_digest, to_char(previous_secret_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS expires,
      to_char(secret_rotated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS rotated
    FROM clients WHERE client_id = 'svc'`.execute(ctx.deps.db)).rows[0] ?? { secret_digest: null, previous_secret_digest: null, expires: null, rotated: null }
}

const rotations = async (ctx: TestApp): Promise<Array<Record<string, unknown>>> =>
  (await ctx.deps.db.selectFrom('audit_events').select('detail').where('type', '=', 'client.secret_rotated').orderBy('id').execute()).map((e) => e.detail)

t.test('--keep-old replaces the lost secret and keeps the deployed one, its deadline untouched to the microsecond', async (t) => {
  const ctx = await buildTestApp(t)
  const { deployed, lost, deadline } = await lostRotation(ctx)
  // A deadline with microseconds, as SQL of the operator's own may leave: a write through a Date would round them off.
  await sql`UPDATE clients SET previous_secret_expires_at = previous_secret_expires_at + interval '0.000123 s' WHERE client_id = 'svc'`.execute(ctx.deps.db)
  const before = await row(ctx)
  ctx.advance(10)
  const replaced = await replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: undefined, clock: ctx.deps.clock }, OPERATOR)
  if (replaced.kind !== 'rotated') throw new Error(`not rotated: ${replaced.kind}`)
  const after = await row(ctx)
  t.same(after.secret_digest, secretDigest(replaced.secret), 'the new secret is the current one')
  t.same(after.previous_secret_digest, before.previous_secret_digest, 'the old digest is kept')
  t.same(after.previous_secret_digest, secretDigest(deployed), 'and it is the deployed secret\'s')
  t.equal(after.expires, before.expires, 'its deadline is the same, to the microsecond')
  t.equal(replaced.previousExpiresAt.toISOString(), `${(before.expires ?? '').slice(0, 23).replace(' ', 'T')}Z`, 'and is the one returned (to the millisecond)')
  t.equal(after.rotated, ctx.deps.clock().toISOString().replace('T', ' ').replace('Z', '000'), 'rotated at the clock read under the lock')
  t.equal(await tokenStatus(ctx, deployed), 200, 'the deployed secret still works')
  t.equal(await tokenStatus(ctx, lost), 401, 'the lost one no longer does')
  t.equal(await tokenStatus(ctx, replaced.secret), 200, 'the new one works')
  ctx.advance(51)
  t.equal(await tokenStatus(ctx, deployed), 401, 'the deployed secret stops at its old deadline')
  t.same((await rotations(ctx)).at(-1), { client_id: 'svc', previous_secret_expires_at: replaced.previousExpiresAt.toISOString(), kept_old: true }, 'audited as a rotation that kept the old secret')
  t.same((await rotations(ctx))[0], { client_id: 'svc', previous_secret_expires_at: deadline.toISOString(), kept_old: false }, 'a plain rotation says so too')
  t.notOk(JSON.stringify(await rotations(ctx)).includes(replaced.secret), 'no secret in the audit trail')
})

t.test('--keep-old --grace D moves the kept secret\'s deadline to now + D, later or sooner', async (t) => {
  const ctx = await buildTestApp(t)
  const { deployed, lost, deadline } = await lostRotation(ctx)
  ctx.advance(30)
  const longer = await replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 3600, clock: ctx.deps.clock }, OPERATOR)
  if (longer.kind !== 'rotated') throw new Error(`not rotated: ${longer.kind}`)
  t.equal(longer.previousExpiresAt.getTime(), ctx.deps.clock().getTime() + 3600_000, 'an hour from the rotation')
  t.equal((await ctx.deps.db.selectFrom('clients').select('previous_secret_expires_at').where('client_id', '=', 'svc').executeTakeFirstOrThrow()).previous_secret_expires_at?.getTime(), longer.previousExpiresAt.getTime(), 'as stored')
  ctx.advance(60)
  t.ok(ctx.deps.clock() > deadline, 'past the deadline the lost rotation gave')
  t.equal(await tokenStatus(ctx, deployed), 200, 'the deployed secret still works')
  t.equal(await tokenStatus(ctx, lost), 401)
  t.equal(await tokenStatus(ctx, longer.secret), 200)
  const sooner = await replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 5, clock: ctx.deps.clock }, OPERATOR)
  if (sooner.kind !== 'rotated') throw new Error(`not rotated: ${sooner.kind}`)
  t.equal(sooner.previousExpiresAt.getTime(), ctx.deps.clock().getTime() + 5000, 'a shorter grace is taken as given')
  t.equal(await tokenStatus(ctx, longer.secret), 401, 'the secret it replaced stops')
  t.equal(await tokenStatus(ctx, deployed), 200)
  ctx.advance(5)
  t.equal(await tokenStatus(ctx, deployed), 401, 'and the kept one stops at the new deadline')
  t.equal(await tokenStatus(ctx, sooner.secret), 200)
  await t.rejects(replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 0, clock: ctx.deps.clock }, OPERATOR), RangeError, 'a grace of 0 would drop the secret it keeps')
})

t.test('--keep-old with no old secret in its grace changes nothing', async (t) => {
  const ctx = await buildTestApp(t)
  const refusedUnchanged = async (what: string, clock = ctx.deps.clock): Promise<void> => {
    const before = await row(ctx)
    const audited = (await rotations(ctx)).length
    t.same(await replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: undefined, clock }, OPERATOR), { kind: 'no_old_secret' }, what)
    t.same(await replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 3600, clock }, OPERATOR), { kind: 'no_old_secret' }, `${what}, --grace too`)
    t.same(await row(ctx), before, `${what}: the row is unchanged`)
    t.equal((await rotations(ctx)).length, audited, `${what}: nothing audited`)
  }
  const created = await createClient(ctx.deps.db, { clientId: 'svc', confidential: true, grants: ['client_credentials'], scopes: ['notes:read'], resources: [] }, ctx.deps.clock(), OPERATOR)
  await refusedUnchanged('never rotated')
  t.equal(await tokenStatus(ctx, created.secret ?? ''), 200, 'its secret still works')

  const rotated = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 60, clock: ctx.deps.clock }, OPERATOR)
  if (rotated.kind !== 'rotated' || rotated.previousExpiresAt === null) throw new Error('setup')
  const deadline = rotated.previousExpiresAt
  await refusedUnchanged('at the very instant its grace ends, as authentication judges it', () => deadline)
  ctx.advance(61)
  await refusedUnchanged('its grace over')
  t.equal(await tokenStatus(ctx, rotated.secret), 200, 'the current secret still works')

  const dropped = await rotateClientSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: 0, clock: ctx.deps.clock }, OPERATOR)
  if (dropped.kind !== 'rotated') throw new Error('setup')
  await refusedUnchanged('rotated with --grace 0')

  t.same(await replaceCurrentSecret(ctx.deps.db, { clientId: 'tessera', graceSeconds: undefined, clock: ctx.deps.clock }, OPERATOR), { kind: 'public' })
  t.same(await replaceCurrentSecret(ctx.deps.db, { clientId: 'nobody', graceSeconds: undefined, clock: ctx.deps.clock }, OPERATOR), { kind: 'unknown' })
})

t.test('--keep-old waits for the client\'s row and judges what the change holding it committed, by a clock read after', async (t) => {
  const ctx = await buildTestApp(t)
  const { deployed } = await lostRotation(ctx)
  let clockReads = 0
  const clock = (): Date => { clockReads++; return ctx.deps.clock() }
  let replacing: ReturnType<typeof replaceCurrentSecret> | undefined
  await ctx.deps.db.transaction().execute(async (trx) => {
    await trx.selectFrom('clients').select('client_id').where('client_id', '=', 'svc').forUpdate().execute()
    replacing = replaceCurrentSecret(ctx.deps.db, { clientId: 'svc', graceSeconds: undefined, clock }, OPERATOR)
    const waiting = await within(5000, async () => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'select %from "clients"%for update'`.execute(ctx.deps.db)).rows[0]?.n) === 1)
    t.ok(waiting !== undefined, 'it waits for the row')
    t.equal(clockReads, 0, 'without having read the clock')
    // Another operator's plain rotation with --grace 0, committed while it waits: the old secret is gone.
    await sql`UPDATE clients SET previous_secret_digest = NULL, previous_secret_expires_at = NULL WHERE client_id = 'svc'`.execute(trx)
  })
  t.same(await replacing, { kind: 'no_old_secret' }, 'it sees the committed change and refuses')
  t.equal(clockReads, 1)
  t.equal(await tokenStatus(ctx, deployed), 401, 'the row is as the other change left it')
})
