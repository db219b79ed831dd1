/**
 * Startup failures an operator can act on: printed as one line, exit 1.
 * @module
 */
import { TesseraError } from '../errors.js'

export class StartupError extends TesseraError {
  readonly code = 'ERR_STARTUP'
}
