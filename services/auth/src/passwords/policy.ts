/**
 * What a password and a username may be. Both are NFKC
 * normalised first so that the same text typed on two keyboards is the same.
 * @module
 */
import { ProblemError } from '../errors.js'

const PASSWORD_MIN = 8
const PASSWORD_MAX = 256
const USERNAME = /^[a-z0-9._-]{3,64}$/
/** With the u flag a surrogate pair is read as its one character, so only a half on its own matches. */
const LONE_SURROGATE = /\p{Surrogate}/u

export function normalizePassword (password: string): string {
  return password.normalize('NFKC')
}

/**
 * Throws a 400 problem naming `field` when the password does not fit the
 * policy. A lone surrogate (JSON's `"\ud800"`, no character of its own) is
 * refused: UTF-8 has no encoding for it, so the hash would see U+FFFD in its
 * place and every such password would be one password.
 */
export function acceptablePassword (password: string, field = 'password'): string {
  if (LONE_SURROGATE.test(password)) {
    throw new ProblemError(400, 'Bad Request', { publicDetail: `${field}: must be Unicode text (it holds a lone surrogate, half of a character)` })
  }
  const normalized = normalizePassword(password)
  const length = [...normalized].length
  if (length < PASSWORD_MIN || length > PASSWORD_MAX) {
    throw new ProblemError(400, 'Bad Request', { publicDetail: `${field}: must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` })
  }
  return normalized
}

/** NFKC, lower-cased; undefined when the result is not 3–64 of a-z 0-9 . _ - */
export function normalizeUsername (username: string): string | undefined {
  const normalized = username.normalize('NFKC').toLowerCase()
  return USERNAME.test(normalized) ? normalized : undefined
}

export function acceptableUsername (username: string): string {
  const normalized = normalizeUsername(username)
  if (normalized === undefined) {
    throw new ProblemError(400, 'Bad Request', { publicDetail: 'username: must be 3 to 64 of a-z, 0-9, ".", "_", "-" (case-insensitive)' })
  }
  return normalized
}

/**
 * The rules above in words, for /openapi.json. A route's schema cannot state
 * them as bounds: they hold after NFKC, which can shorten text (e + U+0301
 * is é) or lengthen it, and after lower-casing, so "ＡＬＩＣＥ" is a valid
 * username; and a schema's refusal would word the error differently.
 */
export const USERNAME_RULE = 'NFKC-normalised and lower-cased, then 3 to 64 of a-z, 0-9, ".", "_", "-" (the length limits of this schema are only a first bound)'
export const PASSWORD_RULE = `${PASSWORD_MIN} to ${PASSWORD_MAX} characters (code points) once NFKC-normalised (the length limits of this schema are only a first bound)`

/** JSON-schema pattern for text that may reach a text column: Postgres refuses NUL, so it is a 400 at the edge. */
export const NO_NUL = '^[^\\u0000]*$'
