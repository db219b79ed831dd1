/**
 * The timer-driven half of the key lifecycle, run by every instance and
 * idempotent: whichever instance holds KEYS_LOCK looks at the stored times and
 * makes every transition that is due, in one transaction, then NOTIFYs.
 *
 *   next      → current   once published for keyPublishLead
 *   current   → (a new next) every keyRotation, early by the lead so that the
 *               new key signs keyRotation after the last one started
 *   previous  → retired   accessTtl + 60 s after it stopped signing
 *   retired   → deleted   once every refresh token it signed has expired
 *   private half erased   once the key stopped signing and no refresh token it
 *                         signed can still be re-presented within the grace window
 *   revoked key's sessions ended again, once, after every instance has
 *                         reloaded its keyring (sweepRevokedKeys)
 * @module
 */
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { endSessions } from '../sessions/end.js'
import { tryLockKeys } from './ensure.js'
import { keyIn, notifyKeysChanged, promoteKey, readKeys, withKeyMadeAhead, type Actor, type KeyMaking } from './transitions.js'

export type LifecycleSettings = Pick<Config, 'keyPublishLead' | 'keyRotation' | 'accessTtl' | 'refreshGrace' | 'keyCheckInterval'>

/** Clock-skew leeway verifiers are allowed on `exp`: a demoted key stays published this much past the last access token it signed. */
export const VERIFIER_LEEWAY = 60
/**
 * Past an instance's own keyring reload (TESSERA_KEY_CHECK_INTERVAL), how long
 * a request it began before reloading may still be storing its tokens: more
 * than the 30 s any request may take.
 */
const IN_FLIGHT_LEEWAY = 60
/** Refresh tokens record issued_at in whole seconds, and instances' readings of Postgres's clock differ a little. */
const ERASE_MARGIN = 1

export interface Transition {
  kind: 'created' | 'promoted' | 'retired' | 'private_erased' | 'deleted'
  kid: string
}

const SWEEP_AUDIT = { retired: 'key.retired', private_erased: 'key.private_erased', deleted: 'key.deleted' } as const

const before = (now: Date, seconds: number): Date => new Date(now.getTime() - seconds * 1000)

/** Only the schedule advances keys on its own (jobs.ts); an operator's rotation is keys/rotate.ts and names its operator. */
const SYSTEM_ACTOR: Actor = { actor: 'system' }

/**
 * Returns the transitions made; undefined when another instance held the lock
 * (it is doing this work). The sweep of revoked keys' sessions comes after, in
 * a transaction of its own: over a key that signed many tokens it is the
 * longest statement here, and its failure (the key work's statement timeout)
 * must not undo, or hold back, a promotion.
 */
export async function advanceKeys (db: Db, making: KeyMaking, settings: LifecycleSettings, now: Date): Promise<Transition[] | undefined> {
  const done = await transitionKeys(db, making, settings, now)
  await db.transaction().execute(async (trx) => { await sweepRevokedKeys(trx, before(now, settings.keyCheckInterval + IN_FLIGHT_LEEWAY), now) })
  return done
}

/**
 * No key is generated ahead (`likely` false): a tick seldom makes one, and
 * only the instance that gets the lock would. The tick that does rolls back,
 * generates it with no lock held and runs again.
 */
async function transitionKeys (db: Db, making: KeyMaking, settings: LifecycleSettings, now: Date): Promise<Transition[] | undefined> {
  return await withKeyMadeAhead(db, making, false, async (trx, maker) => {
    if (!(await tryLockKeys(trx))) return undefined
    const done: Transition[] = []
    const keys = await readKeys(trx)
    const current = keyIn(keys, 'current')
    const next = keyIn(keys, 'next')
    const due = (since: Date | null, seconds: number): boolean => since !== null && since.getTime() + seconds * 1000 <= now.getTime()

    if (next !== undefined && (current === undefined || due(next.published_at, settings.keyPublishLead))) {
      await promoteKey(trx, next.kid, now, SYSTEM_ACTOR, current === undefined ? 'no key was signing' : 'published for the lead time')
      done.push({ kind: 'promoted', kid: next.kid })
    } else if (current === undefined) {
      const kid = await maker.create(trx, now, SYSTEM_ACTOR)
      await promoteKey(trx, kid, now, SYSTEM_ACTOR, 'no key was signing')
      done.push({ kind: 'created', kid }, { kind: 'promoted', kid })
    } else if (next === undefined && settings.keyRotation !== null &&
      due(current.promoted_at, Math.max(0, settings.keyRotation - settings.keyPublishLead))) {
      done.push({ kind: 'created', kid: await maker.create(trx, now, SYSTEM_ACTOR) })
    }

    const retired = await trx.updateTable('signing_keys').set({ state: 'retired', unpublished_at: now })
      .where('state', '=', 'previous').where('demoted_at', '<=', before(now, settings.accessTtl + VERIFIER_LEEWAY))
      .returning('kid').execute()

    const eraseBefore = before(now, settings.refreshGrace + ERASE_MARGIN)
    const erased = await trx.updateTable('signing_keys').set({ private_key_enc: null, private_erased_at: now })
      .where('state', 'in', ['previous', 'retired']).where('private_key_enc', 'is not', null)
      .where('demoted_at', '<=', eraseBefore)
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select('jti')
        .whereRef('refresh_tokens.kid', '=', 'signing_keys.kid').where('refresh_tokens.issued_at', '>', eraseBefore))))
      .returning('kid').execute()

    const deleted = await trx.deleteFrom('signing_keys').where('state', '=', 'retired')
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select('jti')
        .whereRef('refresh_tokens.kid', '=', 'signing_keys.kid').where('refresh_tokens.expires_at', '>', now))))
      .returning('kid').execute()

    const swept: Array<{ kind: keyof typeof SWEEP_AUDIT, kid: string }> = [
      ...retired.map(({ kid }) => ({ kind: 'retired' as const, kid })),
      ...erased.map(({ kid }) => ({ kind: 'private_erased' as const, kid })),
      ...deleted.map(({ kid }) => ({ kind: 'deleted' as const, kid }))]
    await recordAudit(trx, swept.map((t) => ({ type: SWEEP_AUDIT[t.kind], ...SYSTEM_ACTOR, kid: t.kid })))
    done.push(...swept)
    if (done.length > 0) await notifyKeysChanged(trx, done.map((t) => `${t.kind} ${t.kid}`).join(', '))
    return done
  })
}

/**
 * `keys revoke` ends the sessions whose tokens it can see. A login or a
 * rotation in flight then, or on an instance that has not yet reloaded its
 * keyring, can store a token of the key after it: its refresh token is
 * refused (the refresh function checks the key), but its session stayed
 * live, listed in /v1/sessions, its access token taken by that instance until
 * it reloaded. Once every instance must have reloaded (`revokedBefore`), such
 * sessions are ended, once per key (instances sweeping at once: the row lock
 * on the key makes the second find it swept): no statement on the login's or the
 * refresh's path pays for it (a lock on the key's row per token was what
 * migration 0005 removed, docs/decisions.md).
 */
async function sweepRevokedKeys (trx: Db, revokedBefore: Date, now: Date): Promise<void> {
  const due = await trx.updateTable('signing_keys').set({ sessions_swept_at: now })
    .where('state', '=', 'revoked').where('sessions_swept_at', 'is', null).where('revoked_at', '<=', revokedBefore)
    .returning('kid').execute()
  for (const { kid } of due) await endSessions(trx, { kid }, 'key_revoked', now, SYSTEM_ACTOR)
}
