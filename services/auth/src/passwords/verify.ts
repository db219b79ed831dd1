/**
 * The one place a stored password hash is made or checked, whatever its
 * format. The hashing process (passwords/hashing-process.ts) calls only
 * `hashPassword` and `verifyPassword`, so a new stored format (e.g. Django's
 * pbkdf2_sha256$…, bcrypt$…) plugs in by adding a verifier to `VERIFIERS` and
 * a test, without touching the queue or the process plumbing: every verify,
 * of any format, then runs on the bounded queue at the hashing priority.
 * @module
 */
import argon2 from 'argon2'
import { isDjangoHash, verifyDjangoHash } from './django.js'

/** OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane. */
export const ARGON2_PARAMS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const

export interface Argon2Params { memoryCost: number, timeCost: number, parallelism: number }

/** `needsRehash`: the password was right but is stored in another format or with other parameters than Tessera's. */
export interface Verdict { ok: boolean, needsRehash: boolean }

interface Verifier {
  /** True when this verifier reads `encodedHash`. */
  reads: (encodedHash: string) => boolean
  /** Never throws for a malformed hash: that is a wrong password. */
  verify: (encodedHash: string, password: string) => Promise<boolean>
  needsRehash: (encodedHash: string, params: Argon2Params) => boolean
}

const VERIFIERS: readonly Verifier[] = [
  {
    reads: (encodedHash) => encodedHash.startsWith('$argon2'),
    verify: async (encodedHash, password) => await argon2.verify(encodedHash, password).catch(() => false),
    needsRehash: (encodedHash, params) => !encodedHash.startsWith('$argon2id$') || argon2.needsRehash(encodedHash, params)
  },
  {
    // Imported from Django (docs/migrating-from-simplejwt.md): replaced by argon2id at the first good login.
    reads: isDjangoHash,
    verify: verifyDjangoHash,
    needsRehash: () => true
  }
]

/** Whether any verifier reads `encodedHash`; one none reads (Django's unusable `!…`, a format no longer known) never verifies. */
export function verifiable (encodedHash: string): boolean {
  return VERIFIERS.some((v) => v.reads(encodedHash))
}

export async function hashPassword (password: string, params: Argon2Params = ARGON2_PARAMS): Promise<string> {
  return await argon2.hash(password, { ...params, type: argon2.argon2id })
}

/** A cheap parse, no hashing: whether a hash that verified should be replaced by Tessera's argon2id. */
export function needsRehash (encodedHash: string, params: Argon2Params = ARGON2_PARAMS): boolean {
  return VERIFIERS.find((v) => v.reads(encodedHash))?.needsRehash(encodedHash, params) ?? true
}

/** Dispatches on the stored hash's format; an unknown format never verifies. */
export async function verifyPassword (encodedHash: string, password: string, params: Argon2Params = ARGON2_PARAMS): Promise<Verdict> {
  const verifier = VERIFIERS.find((v) => v.reads(encodedHash))
  const ok = verifier === undefined ? false : await verifier.verify(encodedHash, password)
  return { ok, needsRehash: ok && verifier !== undefined && verifier.needsRehash(encodedHash, params) }
}
