/**
 * JSON bodies whose objects name each member once. JSON.parse keeps the last
 * of a repeated member, where a form body's repeated parameter is refused
 * (RFC 6749 §3.1: a parameter must not be included more than once): the same
 * request in JSON would otherwise pass with whichever value a reader picks,
 * and a filter in front of Tessera that reads the first could be shown one
 * client_id while Tessera acts on another.
 * @module
 */
import type { FastifyRequest } from 'fastify'

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c

function backslashesBefore (text: string, at: number): number {
  let count = 0
  while (text.charCodeAt(at - 1 - count) === BACKSLASH) count++
  return count
}

export class RepeatedJsonMemberError extends Error {
  readonly member: string
  readonly code = 'TESSERA_REPEATED_JSON_MEMBER'
  readonly statusCode = 400

  constructor (member: string) {
    super('a JSON object names a member more than once')
    this.member = member
  }
}

/**
 * Valid JSON that Fastify's parser refuses for a `__proto__` member or a
 * `constructor` holding `prototype` (prototype poisoning): told apart from a
 * syntax error, which the parser reports the same way.
 */
export class PrototypeMemberError extends Error {
  readonly code = 'TESSERA_PROTOTYPE_MEMBER'
  readonly statusCode = 400

  constructor () {
    super('a JSON object names __proto__ or constructor.prototype')
  }
}

/** Whether `text` is JSON at all: asked only of a body the safe parser refused. */
export function isJson (text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/**
 * The first member named twice in one object of `text`, or undefined. `text`
 * must already have parsed as JSON: this reads only its strings and
 * brackets. Member names compare as decoded (`"a"` and `"\u0061"` are one).
 * No JSON library reports repeats (JSON.parse's reviver sees the kept
 * value only), hence this scan (docs/decisions.md, "Repeated members").
 */
export function firstRepeatedMember (text: string): string | undefined {
  // One entry per open bracket: an object's names so far, or undefined for an array.
  const open: Array<Set<string> | undefined> = []
  let nameNext = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      // The string's closing quote: the next one not escaped by an odd run of backslashes.
      let end = text.indexOf('"', i + 1)
      while (end > 0 && backslashesBefore(text, end) % 2 === 1) end = text.indexOf('"', end + 1)
      if (end < 0) return undefined // not JSON after all: an unterminated string
      const names = open.at(-1)
      if (nameNext && names !== undefined) {
        const literal = text.slice(i, end + 1)
        const name = literal.includes('\\') ? JSON.parse(literal) as string : literal.slice(1, -1)
        if (names.has(name)) return name
        names.add(name)
        nameNext = false
      }
      i = end
    } else if (c === OPEN_OBJECT) {
      open.push(new Set())
      nameNext = true
    } else if (c === OPEN_ARRAY) {
      open.push(undefined)
      nameNext = false
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop()
      nameNext = false
    } else if (c === COMMA) {
      nameNext = open.at(-1) !== undefined
    }
  }
  return undefined
}

/** A JSON body that is not UTF-8 (RFC 8259 §8.1): refused, not read with U+FFFD in place of what could not be decoded. */
export class NotUtf8Error extends Error {
  readonly code = 'TESSERA_NOT_UTF8'
  readonly statusCode = 400

  constructor () {
    super('a JSON body that is not UTF-8')
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/** The body's text; throws NotUtf8Error when its bytes are not UTF-8 (a byte-order mark is dropped, as JSON.parse would need). */
function utf8Text (body: Buffer): string {
  try {
    return UTF8.decode(body)
  } catch {
    throw new NotUtf8Error()
  }
}

type ParserDone = (err: Error | null, body?: unknown) => void

/** A body parser (`parseAs: 'buffer'`) that hands `parse` the body's UTF-8 text, or fails with NotUtf8Error. */
export function fromUtf8 (parse: (request: FastifyRequest, text: string, done: ParserDone) => void): (request: FastifyRequest, raw: string | Buffer, done: ParserDone) => void {
  return (request, raw, done) => {
    let text: string
    try {
      text = utf8Text(raw as Buffer)
    } catch (err) {
      done(err as Error)
      return
    }
    parse(request, text, done)
  }
}
