/**
 * Django's password hashes, read exactly as `django.contrib.auth.hashers`
 * writes them, so users imported from a Django database log in with their old
 * passwords. Pure: no database, no queue, no Fastify; whichever process runs
 * verification (PasswordHasher's queue) calls verifyDjangoHash.
 *
 * Cost parameters come from the imported file, so each is capped: a hostile
 * row with a billion PBKDF2 iterations or a 4 GiB scrypt must not make one
 * login cost minutes. The caps sit well above what any Django release writes
 * (docs/decisions.md, "Django password hashes").
 * @module
 */
import { createHash, pbkdf2, scrypt, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto'
import { promisify } from 'node:util'
import argon2 from 'argon2'
import bcrypt from 'bcrypt'

/** Django 6.0 writes 1,200,000; room for a few more years of its yearly increases. */
export const MAX_PBKDF2_ITERATIONS = 3_000_000
/** Django writes 12; every step doubles the cost. */
export const MAX_BCRYPT_COST = 15
/** KiB and passes; Django writes m=102400 (100 MiB), t=2. */
const MAX_ARGON2_MEMORY_KIB = 256 * 1024
const MAX_ARGON2_PASSES = 10
/** Django's own ceiling: hashlib's default maxmem of 32 MiB bounds 128·N·r. */
const MAX_SCRYPT_MEMORY = 32 * 1024 * 1024
/** Django writes p=1. */
const MAX_SCRYPT_PARALLELISM = 16

const DJANGO_ALGORITHMS = ['pbkdf2_sha256', 'pbkdf2_sha1', 'argon2', 'bcrypt_sha256', 'bcrypt', 'scrypt'] as const
export type DjangoAlgorithm = typeof DJANGO_ALGORITHMS[number]

export type DjangoHash =
  | { algorithm: 'pbkdf2_sha256' | 'pbkdf2_sha1', iterations: number, salt: string, hash: Buffer }
  | { algorithm: 'argon2', phc: string }
  | { algorithm: 'bcrypt_sha256' | 'bcrypt', bcrypt: string }
  | { algorithm: 'scrypt', n: number, r: number, p: number, salt: string, hash: Buffer }

export type ParsedDjangoHash = { ok: true, hash: DjangoHash } | { ok: false, reason: string }

const SALT = /^[^$]{1,256}$/
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/
const ARGON2 = /^\$(argon2id|argon2i)\$v=19\$m=(\d{1,9}),t=(\d{1,9}),p=(\d{1,9})\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/
const DIGEST_BYTES = { pbkdf2_sha256: 32, pbkdf2_sha1: 20 } as const
const INTEGER = /^[1-9]\d{0,9}$/

const refuse = (reason: string): ParsedDjangoHash => ({ ok: false, reason })

/** The algorithm an encoded hash names, when it is one of Django's that Tessera reads. */
export function djangoAlgorithmOf (encoded: string): DjangoAlgorithm | undefined {
  const end = encoded.indexOf('$')
  if (end < 0) return undefined
  const name = encoded.slice(0, end)
  return (DJANGO_ALGORITHMS as readonly string[]).includes(name) ? name as DjangoAlgorithm : undefined
}

export function isDjangoHash (encoded: string): boolean {
  return djangoAlgorithmOf(encoded) !== undefined
}

function decodeDigest (text: string, bytes: number): Buffer | undefined {
  if (!BASE64.test(text)) return undefined
  const decoded = Buffer.from(text, 'base64')
  return decoded.length === bytes ? decoded : undefined
}

function parsePbkdf2 (algorithm: 'pbkdf2_sha256' | 'pbkdf2_sha1', fields: string[]): ParsedDjangoHash {
  const [iterations, salt, digest] = fields
  if (fields.length !== 3 || iterations === undefined || salt === undefined || digest === undefined) return refuse(`${algorithm}: expected ${algorithm}$iterations$salt$hash`)
  if (!INTEGER.test(iterations)) return refuse(`${algorithm}: iterations is not a positive whole number`)
  if (Number(iterations) > MAX_PBKDF2_ITERATIONS) return refuse(`${algorithm}: ${iterations} iterations is above the cap of ${MAX_PBKDF2_ITERATIONS}`)
  if (!SALT.test(salt)) return refuse(`${algorithm}: the salt is empty or too long`)
  const hash = decodeDigest(digest, DIGEST_BYTES[algorithm])
  if (hash === undefined) return refuse(`${algorithm}: the hash is not base64 of ${DIGEST_BYTES[algorithm]} bytes`)
  return { ok: true, hash: { algorithm, iterations: Number(iterations), salt, hash } }
}

function parseArgon2 (rest: string): ParsedDjangoHash {
  const match = ARGON2.exec(rest)
  if (match === null) return refuse('argon2: expected argon2$argon2id$v=19$m=…,t=…,p=…$salt$hash (or argon2i)')
  const [memory, passes, lanes] = [Number(match[2]), Number(match[3]), Number(match[4])]
  if (memory > MAX_ARGON2_MEMORY_KIB) return refuse(`argon2: m=${memory} KiB is above the cap of ${MAX_ARGON2_MEMORY_KIB}`)
  if (passes > MAX_ARGON2_PASSES) return refuse(`argon2: t=${passes} is above the cap of ${MAX_ARGON2_PASSES}`)
  if (lanes < 1 || lanes > 255 || passes < 1 || memory < 8 * lanes) return refuse('argon2: parameters out of range')
  return { ok: true, hash: { algorithm: 'argon2', phc: rest } }
}

function parseBcrypt (algorithm: 'bcrypt_sha256' | 'bcrypt', rest: string): ParsedDjangoHash {
  const match = BCRYPT.exec(rest)
  if (match === null) return refuse(`${algorithm}: expected ${algorithm}$$2b$NN$ and 53 characters`)
  const cost = Number(match[1])
  if (cost < 4 || cost > MAX_BCRYPT_COST) return refuse(`${algorithm}: cost ${cost} is outside 4 to ${MAX_BCRYPT_COST}`)
  // $2y$ is PHP's name for $2b$ (users carried over from PHP keep it, and Django's bcrypt verifies it); node's bcrypt reads only $2a$ and $2b$.
  return { ok: true, hash: { algorithm, bcrypt: rest.replace(/^\$2y\$/, '$2b$') } }
}

function parseScrypt (fields: string[]): ParsedDjangoHash {
  const [n, salt, r, p, digest] = fields
  if (fields.length !== 5 || n === undefined || salt === undefined || r === undefined || p === undefined || digest === undefined) {
    return refuse('scrypt: expected scrypt$N$salt$r$p$hash')
  }
  if (![n, r, p].every((v) => INTEGER.test(v))) return refuse('scrypt: N, r and p must be positive whole numbers')
  const [cost, blockSize, parallelism] = [Number(n), Number(r), Number(p)]
  if (cost < 2 || (cost & (cost - 1)) !== 0) return refuse('scrypt: N must be a power of two')
  // RFC 7914 §2: N below 2^(128·r/8); OpenSSL refuses the rest, which would fail every login as a fault.
  if (Math.log2(cost) >= 16 * blockSize) return refuse(`scrypt: N=${n} must be below 2^(16·r), r=${r}`)
  if (128 * cost * blockSize > MAX_SCRYPT_MEMORY) return refuse(`scrypt: N=${n}, r=${r} needs more than ${MAX_SCRYPT_MEMORY / 2 ** 20} MiB`)
  if (parallelism > MAX_SCRYPT_PARALLELISM) return refuse(`scrypt: p=${p} is above the cap of ${MAX_SCRYPT_PARALLELISM}`)
  if (!SALT.test(salt)) return refuse('scrypt: the salt is empty or too long')
  const hash = decodeDigest(digest, 64)
  if (hash === undefined) return refuse('scrypt: the hash is not base64 of 64 bytes')
  return { ok: true, hash: { algorithm: 'scrypt', n: cost, r: blockSize, p: parallelism, salt, hash } }
}

/** Checks an encoded hash's shape and cost without computing anything; the reason names what is wrong. */
export function parseDjangoHash (encoded: string): ParsedDjangoHash {
  const algorithm = djangoAlgorithmOf(encoded)
  if (algorithm === undefined) {
    if (!encoded.includes('$')) return refuse('not a hash of the form algorithm$… (Django\'s unsalted MD5, or another legacy hash, is not imported)')
    return refuse(`unknown hash algorithm "${encoded.slice(0, encoded.indexOf('$')).slice(0, 32)}"`)
  }
  const rest = encoded.slice(algorithm.length + 1)
  switch (algorithm) {
    case 'pbkdf2_sha256':
    case 'pbkdf2_sha1':
      return parsePbkdf2(algorithm, rest.split('$'))
    case 'argon2':
      return parseArgon2(`$${rest}`)
    case 'bcrypt_sha256':
    case 'bcrypt':
      return parseBcrypt(algorithm, rest)
    case 'scrypt':
      return parseScrypt(rest.split('$'))
  }
}

const pbkdf2Async = promisify(pbkdf2)
const scryptAsync = promisify<BinaryLike, BinaryLike, number, ScryptOptions, Buffer>(scrypt)

function sameBytes (a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * True when `password`, as the user typed it (Django does not normalise),
 * matches a Django hash. A malformed or over-cap hash is false without any
 * hashing.
 */
export async function verifyDjangoHash (encoded: string, password: string): Promise<boolean> {
  const parsed = parseDjangoHash(encoded)
  if (!parsed.ok) return false
  const hash = parsed.hash
  switch (hash.algorithm) {
    case 'pbkdf2_sha256':
    case 'pbkdf2_sha1': {
      const digest = hash.algorithm === 'pbkdf2_sha256' ? 'sha256' : 'sha1'
      return sameBytes(await pbkdf2Async(password, hash.salt, hash.iterations, hash.hash.length, digest), hash.hash)
    }
    case 'argon2':
      return await argon2.verify(hash.phc, password).catch(() => false)
    case 'bcrypt_sha256':
      // Django 3.1+ feeds bcrypt the hex SHA-256 of the password, lifting bcrypt's 72-byte limit.
      return await bcrypt.compare(createHash('sha256').update(password, 'utf8').digest('hex'), hash.bcrypt)
    case 'bcrypt':
      return await bcrypt.compare(password, hash.bcrypt)
    case 'scrypt': {
      const derived = await scryptAsync(password, hash.salt, hash.hash.length, { N: hash.n, r: hash.r, p: hash.p, maxmem: MAX_SCRYPT_MEMORY + 2 ** 20 })
      return sameBytes(derived, hash.hash)
    }
  }
}
