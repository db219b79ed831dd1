/**
 * multipart/form-data on SimpleJWT's routes, read as Django REST framework's
 * default MultiPartParser gives it to a view, so that a client posting a
 * browser's `FormData` (or Django's test client) moves unchanged. Only those
 * routes take it; /oauth/token keeps RFC 6749's urlencoded form and JSON.
 *
 * What DRF's view sees, and so what this gives `fields()`: a field sent twice
 * is its last value; a file part (drained, never kept) is not a string, so a
 * field read from it is "Not a valid string.", and files count after fields
 * of the same name, as DRF merges request.FILES into request.data; a body
 * with no complete part is an empty form; a body that ends without the
 * closing delimiter keeps the parts it completed (Django also keeps a last
 * part cut short; this does not, since it cannot be told from a truncated
 * one). The body is bounded like every other (BODY_LIMIT): busboy has no
 * total limit of its own.
 *
 * @fastify/busboy, not @fastify/multipart: the plugin JSON-parses a part
 * declared application/json (DRF keeps its text), has no total size limit,
 * and its stream-of-parts API is not needed here (docs/decisions.md,
 * "multipart/form-data on SimpleJWT's routes").
 * @module
 */
import type { IncomingMessage } from 'node:http'
import { Busboy, type BusboyHeaders, type BusboyInstance } from '@fastify/busboy'
import { errorCodes, type FastifyRequest } from 'fastify'
import { DrfError } from '../errors.js'
import { BODY_LIMIT } from '../http/limits.js'

/** A file part's value: not a string, as DRF's request.data holds the upload itself. */
const FILE_PART: Readonly<{ file: true }> = Object.freeze({ file: true })

/** DRF's own answer to a multipart Content-Type without a boundary. */
const NO_BOUNDARY = new DrfError(400, { detail: 'Multipart form parse error - Invalid boundary in multipart: None' })

/** A Fastify content-type parser for multipart/form-data: the body's fields as SimpleJWT's views read them. */
export async function parseMultipartForm (request: FastifyRequest, payload: IncomingMessage): Promise<Record<string, unknown>> {
  if (Number(request.headers['content-length']) > BODY_LIMIT) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()
  let parser: BusboyInstance
  try {
    parser = new Busboy({
      headers: request.headers as BusboyHeaders,
      // Every field is within the body's limit, so none is ever cut short.
      limits: { fieldSize: BODY_LIMIT },
      // Django's test: a part is a file only when it names a file (an empty file input sends filename="": a field).
      isPartAFile: (_name: string | undefined, _type: string | undefined, filename: string | undefined) => filename !== undefined && filename !== ''
    })
  } catch {
    throw NO_BOUNDARY
  }
  const fields = new Map<string, unknown>()
  const files = new Map<string, unknown>()
  return await new Promise((resolve, reject) => {
    const complete = (): void => { resolve(Object.fromEntries([...fields, ...files])) }
    let received = 0
    payload.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received <= BODY_LIMIT) return
      payload.unpipe(parser)
      reject(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
    })
    payload.on('error', reject)
    // Names as Django reads them: trimmed; a part without one is skipped.
    parser.on('field', (name: string | undefined, value) => { if (name !== undefined) fields.set(name.trim(), value) })
    parser.on('file', (name: string | undefined, stream) => {
      // A file cut short errors on its own stream as well as on the parser's; the parser's answers it.
      stream.on('error', () => {}).resume()
      if (name !== undefined) files.set(name.trim(), FILE_PART)
    })
    // busboy's one parse error: the body ended before its closing delimiter.
    // Django keeps the parts completed by then, and so does this.
    parser.on('error', complete)
    parser.on('finish', complete)
    payload.pipe(parser)
  })
}
