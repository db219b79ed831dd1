/**
 * `keys revoke KID`, the compromise path: the key leaves the JWKS and loses its
 * private half at once, every session that holds a refresh token it signed
 * ends, and when it was the signer another key signs at once (the pending
 * `next` if there is one, else a new key).
 * @module
 */
import type { Db, KeyState } from '../db/database.js'
import { recordAudit } from '../audit/record.js'
import { endSessions } from '../sessions/end.js'
import { lockKeys } from './ensure.js'
import { assertKekMatches, notifyKeysChanged, promoteKey, withKeyMadeAhead, type Actor, type KeyMaking } from './transitions.js'
import { TesseraError } from '../errors.js'

export interface RevokeOutcome {
  kid: string
  /** The state it was in; `revoked` means it already was and nothing changed. */
  was: KeyState
  sessionsEnded: number
  /** The key that signs now, when the revoked key was the signer. */
  promoted: string | undefined
  /** When that key was published: a pending key made moments ago is no better known to verifiers than a new one. */
  promotedPublishedAt: Date | undefined
  /** Whether that key was made here, there being no pending one. */
  promotedCreated: boolean
}

export class UnknownKeyError extends TesseraError {
  readonly kid: string
  readonly code = 'ERR_UNKNOWN_KEY'

  constructor (kid: string) {
    super(`no signing key has kid ${kid}`)
    this.kid = kid
  }
}

/**
 * `clock` is read once the keys' lock is taken: a transition that committed while this one waited is dated before it, not after.
 * A replacement is generated before the lock when, as this call began, the key signed and no `next` key waited.
 */
export async function revokeKey (db: Db, making: KeyMaking, input: { kid: string, clock: () => Date, who: Actor }): Promise<RevokeOutcome> {
  const { kid, who } = input
  const seen = await db.selectFrom('signing_keys').select(['kid', 'state'])
    .where(({ or, eb }) => or([eb('kid', '=', kid), eb('state', '=', 'next')])).execute()
  const replacementLikely = seen.some((k) => k.kid === kid && k.state === 'current') && !seen.some((k) => k.state === 'next')
  return await withKeyMadeAhead(db, making, replacementLikely, async (trx, maker) => {
    await lockKeys(trx)
    const now = input.clock()
    const key = await trx.selectFrom('signing_keys').select(['state', 'unpublished_at', 'private_erased_at'])
      .where('kid', '=', kid).executeTakeFirst()
    if (key === undefined) throw new UnknownKeyError(kid)
    if (key.state === 'revoked') return { kid, was: key.state, sessionsEnded: 0, promoted: undefined, promotedPublishedAt: undefined, promotedCreated: false }
    const next = key.state === 'current'
      ? await trx.selectFrom('signing_keys').select(['kid', 'published_at']).where('state', '=', 'next').executeTakeFirst()
      : undefined
    // A replacement made here is sealed under this KEK. Checked before this
    // key's private half is erased: it may be the last sealed one, and then
    // nothing would be left to tell a wrong KEK, which would seal the new
    // signer where no instance can open it.
    if (key.state === 'current' && next === undefined) await assertKekMatches(trx, making.kek)
    await trx.updateTable('signing_keys').set({
      state: 'revoked',
      revoked_at: now,
      unpublished_at: key.unpublished_at ?? now,
      private_key_enc: null,
      private_erased_at: key.private_erased_at ?? now
    }).where('kid', '=', kid).execute()
    await recordAudit(trx, { type: 'key.revoked', ...who, kid, detail: { was: key.state } })
    const sessionsEnded = await endSessions(trx, { kid }, 'key_revoked', now, who)
    let promoted: string | undefined
    let promotedPublishedAt: Date | undefined
    if (key.state === 'current') {
      promoted = next?.kid ?? await maker.create(trx, now, who)
      promotedPublishedAt = next?.published_at ?? now
      await promoteKey(trx, promoted, now, who, `replaces revoked ${kid}`)
    }
    await notifyKeysChanged(trx, `revoked ${kid}`)
    return { kid, was: key.state, sessionsEnded, promoted, promotedPublishedAt, promotedCreated: key.state === 'current' && next === undefined }
  })
}
