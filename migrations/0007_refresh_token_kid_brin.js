// @ts-check
/**
 * The index on refresh_tokens.kid becomes a BRIN bloom index. Every refresh
 * inserts its successor through this table's indexes; the kid's btree took
 * an entry per token, yet only rare paths read it: revoking a key (the
 * sessions holding its tokens), and the key timer's sweep (is a demoted key
 * still needed by an unexpired token, was one issued under it lately). A
 * token's kid is the key signing when it was issued, so a key's tokens fill
 * the pages of its time: a bloom summary per range of pages finds them, and
 * an insert changes the summary only when its range meets a kid for the
 * first time. BRIN is a summarizing index, so marking a token used stays a
 * HOT update (0006). The other three indexes stay: the primary key (every
 * refresh), session_id (ending and deleting sessions), expires_at
 * (cleanup, in expiry order).
 *
 * Measured, and each rare path's plan on a million tokens:
 * docs/decisions.md, "The kid index summarizes" and docs/performance-history.md,
 * "Session 5: refresh".
 * @module
 */
import { sql } from 'kysely'

/** @param {import('kysely').Kysely<unknown>} db */
export async function up (db) {
  await sql`
    DROP INDEX refresh_tokens_kid;
    -- A range of 128 pages holds the tokens of a few keys at most: the filter is sized for 16.
    CREATE INDEX refresh_tokens_kid ON refresh_tokens USING brin (kid text_bloom_ops (n_distinct_per_range = 16));
  `.execute(db)
}

/** @param {import('kysely').Kysely<unknown>} db */
export async function down (db) {
  await sql`
    DROP INDEX refresh_tokens_kid;
    CREATE INDEX refresh_tokens_kid ON refresh_tokens (kid);
  `.execute(db)
}
