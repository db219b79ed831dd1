/**
 * Whether a request carries a header on more than one line. Node keeps the
 * first of two Host, Authorization or Content-Type lines in request.headers
 * and drops the rest; rawHeaders has every line as sent. The Host check runs
 * on every request, the JWKS's included: no name is copied to compare it.
 * @module
 */
import type { IncomingMessage } from 'node:http'

/** Whether `sent`, a header name as the client spelled it, is `name` (lower-case letters and `-`) in any case. */
function isNamed (sent: string, name: string): boolean {
  if (sent.length !== name.length) return false
  for (let i = 0; i < name.length; i++) {
    // Sets the lower-case bit: a letter of either case matches its lower case,
    // and no other character a header name may hold becomes a letter or `-`.
    if ((sent.charCodeAt(i) | 0x20) !== name.charCodeAt(i)) return false
  }
  return true
}

/** `name` in lower case. */
export function repeatsHeader (message: IncomingMessage, name: string): boolean {
  const raw = message.rawHeaders
  let seen = 0
  for (let i = 0; i < raw.length; i += 2) {
    if (isNamed(raw[i] as string, name) && ++seen > 1) return true
  }
  return false
}
