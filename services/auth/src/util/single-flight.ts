/**
 * singleFlight: one run at a time of an idempotent reload, however many ask.
 * @module
 */
/**
 * Wraps a reload so that callers arriving while one runs share it and one more
 * run follows: many notifications in a burst cost at most two reads.
 */
export function singleFlight (run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  let again = false
  return async () => {
    if (running !== undefined) {
      again = true
      return await running
    }
    running = (async () => {
      try {
        do {
          again = false
          await run()
        } while (again)
      } finally {
        running = undefined
      }
    })()
    return await running
  }
}
