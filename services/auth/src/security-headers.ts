/**
 * The security headers on every response: helmet's, as @fastify/helmet set
 * them before (no Content-Security-Policy and no Cross-Origin-Resource-Policy:
 * a JSON API and a JWKS that other origins fetch). helmet runs once here, at
 * start-up, against a recorder; the values are then set per request with one
 * reply.headers() call. @fastify/helmet built helmet's middleware chain again
 * on every request (docs/performance-history.md, "What was removed from the hot routes, and why").
 * @module
 */
import helmet from 'helmet'

function helmetHeaders (): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader: (name: string, value: string | number | readonly string[]) => { headers[name.toLowerCase()] = String(value) },
    removeHeader: (name: string) => { Reflect.deleteProperty(headers, name.toLowerCase()) }
  }
  const middleware = helmet({ contentSecurityPolicy: false, crossOriginResourcePolicy: false })
  let called = false
  middleware({} as never, recorder as never, () => { called = true })
  if (!called) throw new Error('helmet did not finish synchronously')
  return Object.freeze(headers)
}

export const SECURITY_HEADERS = helmetHeaders()
