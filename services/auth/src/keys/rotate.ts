/**
 * `keys rotate`: publish a new key ahead of signing with it, or with
 * `immediate` (the emergency path) make it sign at once. Verifiers holding a
 * cached JWKS then meet an unknown kid and must refetch; normal rotation never
 * costs them that.
 * @module
 */
import type { Db } from '../db/database.js'
import { lockKeys } from './ensure.js'
import { keyIn, notifyKeysChanged, promoteKey, readKeys, withKeyMadeAhead, type Actor, type KeyMaking } from './transitions.js'

export interface RotateOutcome {
  /** A key made by this call. */
  created: string | undefined
  /** The key that signs after this call, when this call promoted it. */
  promoted: string | undefined
  /** The key that stopped signing. */
  demoted: string | undefined
  /** A `next` key that was already waiting (plain rotate changes nothing then). */
  pending: string | undefined
  /** When the promoted key was published: a pending key made moments ago is no better known to verifiers than a new one. */
  promotedPublishedAt: Date | undefined
}

/**
 * `clock` is read once the keys' lock is taken: a transition that committed while this one waited is dated before it, not after.
 * A key is made when no `next` key waits, plain or --now: generated before the lock when none waited as this call began.
 */
export async function rotateKeys (db: Db, making: KeyMaking, input: { immediate: boolean, clock: () => Date, who: Actor }): Promise<RotateOutcome> {
  const waiting = await db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').executeTakeFirst()
  return await withKeyMadeAhead(db, making, waiting === undefined, async (trx, maker) => {
    await lockKeys(trx)
    const now = input.clock()
    const next = keyIn(await readKeys(trx), 'next')
    if (!input.immediate && next !== undefined) {
      return { created: undefined, promoted: undefined, demoted: undefined, pending: next.kid, promotedPublishedAt: undefined }
    }
    const kid = next?.kid ?? await maker.create(trx, now, input.who)
    const created = next === undefined ? kid : undefined
    const demoted = input.immediate ? await promoteKey(trx, kid, now, input.who, 'rotate --now') : undefined
    await notifyKeysChanged(trx, input.immediate ? `promoted ${kid}` : `published ${kid}`)
    return { created, promoted: input.immediate ? kid : undefined, demoted, pending: undefined, promotedPublishedAt: input.immediate ? next?.published_at ?? now : undefined }
  })
}
