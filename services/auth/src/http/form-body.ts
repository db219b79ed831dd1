/**
 * application/x-www-form-urlencoded bodies, read so that every value is
 * exactly what the client encoded, or the body is refused. @fastify/formbody
 * (fast-querystring) read bytes that are not UTF-8 as U+FFFD and kept a
 * malformed escape as its literal text (`%FF` as the three characters
 * `%FF`), so a login checked a password other than the one sent, and some
 * other account's password could match it; SimpleJWT's URLSearchParams did
 * the former for `%FF` too. A body is refused instead, 400 in the route's
 * format, as a JSON body that is not UTF-8 is (json-body.ts), by
 * decodeURIComponent's own refusal of a malformed or non-UTF-8 escape
 * (docs/decisions.md, "Form bodies").
 *
 * A repeated parameter becomes a list, which the routes' schemas refuse
 * (RFC 6749 §3.1) and SimpleJWT's read as its last value, as Django does.
 * @module
 */

/** A form body whose bytes or percent-escapes are not UTF-8, or with a `%` that begins no escape. */
export class MalformedFormError extends Error {
  readonly code = 'TESSERA_MALFORMED_FORM'
  readonly statusCode = 400

  constructor () {
    super('the form body is not UTF-8 text as percent-encoding writes it; write a literal % as %25')
  }
}

/** A form's parameters; null-prototype, so `__proto__` is a parameter like any other. */
export type Form = Record<string, string | string[]>

const UTF8 = new TextDecoder('utf-8', { fatal: true })
const PLUS = /\+/g

/** One name or value as sent: `+` is a space (a plus is `%2B`); escapes decoded only where there are any, since most values have none. */
function decoded (part: string): string {
  const spaced = part.includes('+') ? part.replace(PLUS, ' ') : part
  if (!spaced.includes('%')) return spaced
  try {
    return decodeURIComponent(spaced)
  } catch {
    throw new MalformedFormError()
  }
}

/** The body's parameters; throws MalformedFormError. An empty segment (`a=1&&b=2`) is skipped, and a name without `=` has the value "". */
export function parseForm (body: Buffer): Form {
  let text: string
  try {
    text = UTF8.decode(body)
  } catch {
    throw new MalformedFormError()
  }
  const form: Form = Object.create(null) as Form
  for (const pair of text.split('&')) {
    if (pair === '') continue
    const equals = pair.indexOf('=')
    const name = decoded(equals < 0 ? pair : pair.slice(0, equals))
    const value = equals < 0 ? '' : decoded(pair.slice(equals + 1))
    const earlier = form[name]
    if (earlier === undefined) form[name] = value
    else if (Array.isArray(earlier)) earlier.push(value)
    else form[name] = [earlier, value]
  }
  return form
}

type ParserDone = (err: Error | null, body?: unknown) => void

/** parseForm as a Fastify content-type parser (`parseAs: 'buffer'`), the form handed on as `read` gives it. */
export function formParser (read: (form: Form) => unknown = (form) => form): (request: unknown, body: string | Buffer, done: ParserDone) => void {
  return (_request, body, done) => {
    let form: Form
    try {
      form = parseForm(body as Buffer)
    } catch (err) {
      done(err as Error)
      return
    }
    done(null, read(form))
  }
}

/** Each parameter's last value, as Django's QueryDict gives it to a view. */
export function lastValues (form: Form): Record<string, string> {
  const last: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [name, value] of Object.entries(form)) last[name] = Array.isArray(value) ? value.at(-1) as string : value
  return last
}
