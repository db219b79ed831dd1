/**
 * Every Postgres advisory lock id Tessera takes, in one place so that two
 * concerns can never pick the same number by accident. Each is a distinct
 * lock on purpose: a cleanup never waits for a key rotation, nor one cleanup
 * for the other.
 * @module
 */

/** Every key-state change takes this lock (transaction-scoped), so transitions from many instances never interleave. */
export const KEYS_LOCK = 0x7e55e4a1

/** Pruning the login throttle (transaction-scoped): one instance at a time. */
export const THROTTLE_CLEANUP_LOCK = 0x7e55e4a2

/**
 * `users import` (session-scoped, waited for): one import at a time. A name
 * another import committed while this one's statement ran is invisible to
 * that statement, and was reported as held by a user no import made.
 */
export const USERS_IMPORT_LOCK = 0x7e55e4a3

/** Deleting expired sessions, tokens and audit rows (session-scoped, tried): one instance per round. */
export const SESSION_CLEANUP_LOCK = 0x7e55c1ea
