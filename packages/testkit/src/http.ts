import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  /** The body as text. */
  body: string
  /** The body parsed as JSON; throws when it is not JSON. */
  json: <T = Record<string, unknown>>() => T
}

export interface RequestOptions {
  method?: string
  headers?: Record<string, string>
  /** An object is sent as JSON (with its content-type); a string as it is. */
  body?: string | object
  /** The CA to trust for https (a gateway's self-signed certificate). */
  ca?: Buffer | string
  timeoutMs?: number
}

/**
 * One HTTP(S) request on a fresh connection (no keep-alive pool), so no test
 * leaves a socket open behind it and a custom CA can be trusted per call.
 */
export async function request (url: string, options: RequestOptions = {}): Promise<Reply> {
  const method = options.method ?? 'GET'
  const isJson = typeof options.body === 'object'
  const body = typeof options.body === 'object' ? JSON.stringify(options.body) : options.body
  const headers: Record<string, string> = {
    ...(isJson ? { 'content-type': 'application/json' } : {}),
    ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
    ...options.headers
  }
  const make = url.startsWith('https:') ? httpsRequest : httpRequest
  return await new Promise((resolve, reject) => {
    const req = make(url, { method, headers, ca: options.ca, agent: false, timeout: options.timeoutMs ?? 30_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: <T>() => JSON.parse(text) as T }))
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}
