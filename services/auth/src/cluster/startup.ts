/**
 * Startup failures an operator can act on: printed as one line, exit 1.
 * @module
 */
export class StartupError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StartupError'
  }
}
