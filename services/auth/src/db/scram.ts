/**
 * A role's password as Postgres stores it: a SCRAM-SHA-256 verifier (RFC
 * 5802, RFC 7677), made here as psql's `\password` makes it. `CREATE ROLE …
 * PASSWORD 'cleartext'` sends the password to the server, whose log records
 * the whole statement when it fails (and every time under log_statement=ddl),
 * as does pg_stat_statements; a verifier there gives nothing to log in with.
 * node-postgres has no function for it (it only answers the server's
 * challenge), so the few lines are here.
 * @module
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'

/** Postgres's default scram_iterations, what its own client library uses. */
const ITERATIONS = 4096
const SALT_BYTES = 16

/**
 * RFC 4013's SASLprep as node-postgres applies it when it logs in (non-ASCII
 * spaces to U+0020, the characters mapped to nothing dropped, NFKC), and as
 * Postgres and libpq do for any password SASLprep accepts: the verifier must
 * be made from the very text a client will derive its proof from.
 */
function saslprep (password: string): string {
  const nonAsciiSpace = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g
  // eslint-disable-next-line no-misleading-character-class -- RFC 3454 B.1 lists these joiners and selectors because they combine
  const mappedToNothing = /[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g
  return password.replace(nonAsciiSpace, ' ').replace(mappedToNothing, '').normalize('NFKC')
}

/** `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64, as in pg_authid.rolpassword. */
export function scramVerifier (password: string): string {
  const salt = randomBytes(SALT_BYTES)
  const salted = pbkdf2Sync(saslprep(password), salt, ITERATIONS, 32, 'sha256')
  const clientKey = createHmac('sha256', salted).update('Client Key').digest()
  const storedKey = createHash('sha256').update(clientKey).digest()
  const serverKey = createHmac('sha256', salted).update('Server Key').digest()
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`
}
