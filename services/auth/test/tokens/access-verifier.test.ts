/**
 * tokens/verify-access.ts's memory of verified tokens: what a remembered
 * token skips, and every way a token that passed once must still be refused
 * (expiry and nbf on a hit, a key leaving the keyring, a byte changed), on an
 * in-memory keyring with real RSA keys made here.
 */
import t from 'tap'
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import type { KeyState, PublicJwk } from '../../src/db/database.js'
import { InvalidTokenError } from '../../src/errors.js'
import { Keyring, type LoadedKey } from '../../src/keys/keyring.js'
import { signCompactJws } from '../../src/tokens/jws.js'
import { mintAccessToken } from '../../src/tokens/mint.js'
import { accessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify-access.js'

const config = { issuer: 'https://issuer.example', audience: ['api'], accessTtl: 300, simplejwtCompat: false }

/** Counts the key lookups a verification makes: a remembered token makes none. */
class CountingKeyring extends Keyring {
  lookups = 0
  override accessVerificationKey (kid: string): LoadedKey | undefined {
    this.lookups++
    return super.accessVerificationKey(kid)
  }
}

function loadedKey (kid: string, state: KeyState): LoadedKey {
  const { privateKey, publicKey }: { privateKey: KeyObject, publicKey: KeyObject } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } as unknown as PublicJwk
  return { kid, state, jwk, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey, publishedAt: new Date(0), promotedAt: new Date(0) }
}

const current = loadedKey('k-current', 'current')
const start = new Date('2026-12-04T12:00:00Z')
const later = (seconds: number): Date => new Date(start.getTime() + seconds * 1000)

/** A uuid per name, as the users' and sessions' ids are (the verifier refuses any other sub or sid). */
const ids = new Map<string, string>()
function idOf (name: string): string {
  const id = ids.get(name) ?? randomUUID()
  ids.set(name, id)
  return id
}

function mint (keyring: Keyring, subject: string, now = start): string {
  return mintAccessToken(config, keyring, { subject: idOf(subject), sessionId: idOf(`s-${subject}`), clientId: 'web', scope: 'profile', audience: undefined, now }).token
}

/** A counting keyring holding the current key, a verifier over it, and one token of u1's (minted at `at`) it has verified once. */
function verifiedOnce (at = start): { keyring: CountingKeyring, verifier: AccessTokenVerifier, token: string } {
  const keyring = new CountingKeyring()
  keyring.replace([current])
  const verifier = accessTokenVerifier(config, keyring)
  const token = mint(keyring, 'u1', at)
  verifier.verify(token, at)
  return { keyring, verifier, token }
}

function refusal (verify: () => unknown): string {
  try {
    verify()
  } catch (err) {
    if (err instanceof InvalidTokenError) return err.reason
    throw err
  }
  return 'accepted'
}

t.test('a token presented again is answered from memory: the same claims, no key looked up', async (t) => {
  const keyring = new CountingKeyring()
  keyring.replace([current])
  const verifier = accessTokenVerifier(config, keyring)
  const token = mint(keyring, 'u1')
  const first = verifier.verify(token, start)
  t.same(first, { sub: idOf('u1'), sid: idOf('s-u1'), clientId: 'web', scope: 'profile' })
  t.equal(keyring.lookups, 1)
  t.equal(verifier.verify(token, later(10)), first, 'the remembered claims')
  t.equal(keyring.lookups, 1, 'the second use looked up no key, so verified no signature')
  t.equal(verifier.remembered, 1)
  t.ok(Object.isFrozen(first), 'a caller cannot change what the next one is given')
})

t.test('expiry is checked on every use: a remembered token past its exp is refused and forgotten', async (t) => {
  const { verifier, token } = verifiedOnce()
  t.equal(refusal(() => verifier.verify(token, later(299.999))), 'accepted', 'a millisecond before exp')
  t.equal(refusal(() => verifier.verify(token, later(300))), 'expired', 'at exp itself (RFC 7519 §4.1.4: valid only before it), as a first verification would be')
  t.equal(verifier.remembered, 0)
  t.equal(refusal(() => verifier.verify(token, later(300))), 'expired', 'and verified afresh, still refused')
})

t.test('nbf is checked on every use: a clock set back before it refuses a remembered token', async (t) => {
  const { keyring, verifier, token } = verifiedOnce(later(60))
  // mint sets no nbf, so this token is valid at any time before its exp: the clock going back is not a refusal.
  t.equal(refusal(() => verifier.verify(token, start)), 'accepted', 'no nbf, nothing to refuse')
  const withNbf = accessTokenVerifier(config, keyring)
  const parts = token.split('.')
  const claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString()) as Record<string, unknown>
  const nbfToken = signCompactJws({ alg: 'RS256', kid: current.kid, typ: 'at+jwt' }, { ...claims, nbf: Number(claims.iat) }, current.privateKey as KeyObject)
  t.equal(refusal(() => withNbf.verify(nbfToken, later(60))), 'accepted')
  t.equal(refusal(() => withNbf.verify(nbfToken, later(59))), 'not yet valid', 'remembered, and still refused before its nbf')
})

t.test('a replaced keyring empties the memory: a key no longer published refuses its remembered tokens', async (t) => {
  const { keyring, verifier, token } = verifiedOnce()
  const successor = loadedKey('k-next', 'current')
  keyring.replace([{ ...current, state: 'previous' }, successor])
  t.equal(refusal(() => verifier.verify(token, later(1))), 'accepted', 'a previous key still verifies')
  t.equal(keyring.lookups, 2, 'verified again after the reload, not answered from memory')
  keyring.replace([{ ...current, state: 'retired' }, successor])
  t.equal(refusal(() => verifier.verify(token, later(2))), 'unknown kid k-current', 'a retired key does not')
  keyring.replace([successor])
  t.equal(refusal(() => verifier.verify(token, later(3))), 'unknown kid k-current', 'nor a key gone from the keyring')
  t.equal(verifier.remembered, 0)
})

t.test('only exact bytes are remembered: a token changed anywhere is verified, and refused', async (t) => {
  const { verifier, token } = verifiedOnce()
  const flip = (at: number): string => token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1)
  t.equal(refusal(() => verifier.verify(flip(token.length - 3), start)), 'signature', 'a signature byte')
  t.equal(refusal(() => verifier.verify(flip(token.indexOf('.') + 5), start)), 'signature', 'a payload byte')
  t.equal(refusal(() => verifier.verify(`${token}.`, start)), 'not a compact JWS')
  t.equal(verifier.remembered, 1, 'refusals are not remembered')
})

t.test('the memory is bounded: past its capacity the oldest is forgotten, and verified again when it returns', async (t) => {
  const keyring = new CountingKeyring()
  keyring.replace([current])
  const verifier = accessTokenVerifier(config, keyring, 2)
  const [a, b, c] = ['a', 'b', 'c'].map((subject) => mint(keyring, subject)) as [string, string, string]
  for (const token of [a, b, c]) verifier.verify(token, start)
  t.equal(verifier.remembered, 2)
  t.equal(keyring.lookups, 3)
  verifier.verify(c, start)
  t.equal(keyring.lookups, 3, 'the newest is remembered')
  t.equal(verifier.verify(a, start).sub, idOf('a'), 'the oldest, forgotten, is accepted again')
  t.equal(keyring.lookups, 4, 'after a fresh verification')
  t.equal(verifier.remembered, 2)
})
