/**
 * Request ids made by this process: a random prefix drawn once per process
 * start and a counter, shaped like a UUID (8-4-4-4-12 hex) so that logs,
 * problem bodies and the gateway read them as before. 80 random bits per
 * process keep them unique across an instance's workers, its restarts and
 * other instances; the counter keeps them unique within a process, and a new
 * prefix is drawn before its 12 hex digits could wrap. randomUUID() costs a
 * draw from the entropy pool per request (and a refill every 128), which is
 * measurable on the JWKS (docs/performance-history.md, "The read paths at the bare
 * route's pace"). A request id is a correlation handle, not a secret: being
 * able to guess the next one grants nothing.
 * @module
 */
import { randomBytes } from 'node:crypto'

function drawPrefix (): string {
  const hex = randomBytes(10).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-`
}

/**
 * A source of request ids for one process (each call of the returned function
 * gives the next). `counterDigits` is the counter's width: 12 makes the UUID
 * shape; tests pass a small one to see the prefix renewed.
 */
export function requestIds (counterDigits = 12): () => string {
  const limit = 16 ** counterDigits
  let prefix = drawPrefix()
  let counter = 0
  return () => {
    if (++counter === limit) {
      prefix = drawPrefix()
      counter = 1
    }
    return prefix + counter.toString(16).padStart(counterDigits, '0')
  }
}
