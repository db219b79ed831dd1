import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'

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
  /** The address the connection is made from (a loopback such as 127.0.0.2): a client other than 127.0.0.1. */
  localAddress?: string
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
    const req = make(url, { method, headers, ca: options.ca, agent: false, timeout: options.timeoutMs ?? 30_000, localAddress: options.localAddress }, (res) => {
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

export interface Trickled {
  /** What the server sent before it closed the connection, or before `deadlineMs`. */
  answer: string
  /** Whether the server closed the connection within `deadlineMs`. */
  closed: boolean
  elapsedMs: number
}

/**
 * A slow client: `head` (a request line, headers and the body's first bytes)
 * on a raw connection, then one more byte every `everyMs`, until the server
 * answers and closes or `deadlineMs` has passed. How a test sees that a
 * server bounds a request's whole arrival, not only its headers.
 */
export async function trickleRequest (port: number, head: string, options: { everyMs: number, deadlineMs: number }): Promise<Trickled> {
  const socket = connect(port, '127.0.0.1')
  const started = Date.now()
  socket.write(head)
  const trickle = setInterval(() => { if (!socket.destroyed) socket.write(' ') }, options.everyMs)
  try {
    return await new Promise<Trickled>((resolve) => {
      let answer = ''
      socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
      socket.on('close', () => { resolve({ answer, closed: true, elapsedMs: Date.now() - started }) })
      socket.on('error', () => {})
      setTimeout(() => { resolve({ answer, closed: false, elapsedMs: Date.now() - started }) }, options.deadlineMs)
    })
  } finally {
    clearInterval(trickle)
    socket.destroy()
  }
}
