/**
 * The path of a request target, for what an error answer echoes or looks up.
 * @module
 */

/**
 * The path a request target names, without its query string, as the router
 * matches it: the target itself in origin-form (`/v1/me`) and asterisk-form
 * (`*`); in the absolute-form a server must accept too (RFC 9112 §3.2.2,
 * `GET http://host/v1/me`, which the router serves as `/v1/me`), what follows
 * its authority (`/` when nothing does). Never the authority itself: it may
 * carry a userinfo (`user:password@`), which no answer or log line repeats.
 * Any other target (another scheme, no authority) names no path: ''. For the
 * answers of refused and unrouted requests, and the metrics listener's one
 * path; Fastify's router finds a route's path itself, so a request served
 * normally never costs this.
 */
export function targetPath (target: string): string {
  let path = target
  if (!target.startsWith('/') && target !== '*') {
    const authority = /^https?:\/\/[^/?#]*/i.exec(target)
    const rest = authority === null ? '' : target.slice(authority[0].length)
    path = authority === null ? '' : rest.startsWith('/') ? rest : `/${rest}`
  }
  return path.split('?')[0] ?? ''
}
