import { Writable } from 'node:stream'

export interface MemorySink {
  /** Give this to pino (or createLogger) as its destination. */
  stream: Writable
  /** Every chunk written so far, one log line each for pino. */
  lines: () => string[]
  /** Everything written so far, as one text. */
  text: () => string
}

/** A log destination that keeps what it is given, so a test can read the logs. */
export function memorySink (): MemorySink {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { chunks.push(chunk.toString()); done() } })
  return { stream, lines: () => [...chunks], text: () => chunks.join('') }
}
