// @ts-check
/**
 * The back-off's streak ends only once `max` has passed since its block
 * ended (or since its last failure, when it never reached a block). Before,
 * it ended `max` after the last failure, which is the very moment a capped
 * block ends: the first attempt after every capped block counted from one
 * again, with the threshold's free guesses each time (about fifteen every
 * half hour at the defaults instead of one per block). Why:
 * docs/decisions.md, "Back-off state lives in Postgres". The function's one
 * definition is migrations/0008's, here given the other staleness rule.
 * @module
 */
import { defineCountLoginAttempt } from './0008_login_round_trips.js'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await defineCountLoginAttempt(db, 'coalesce(lt.blocked_until, lt.last_failed_at)')
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await defineCountLoginAttempt(db, 'lt.last_failed_at')
}
