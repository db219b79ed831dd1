/**
 * keys/keyring.ts's JWKS body: its order is the kids' code-unit order, so
 * every instance serves the same body and ETag for the same keys whatever
 * its locale (localeCompare put `qsx…` before `XpwQ…`, and differed between
 * locales). Its version, which moves only when what a verification depends
 * on does, and its catch-up on a kid it does not hold (the e2e side, with
 * real instances, is test/e2e/key-catch-up.test.ts).
 */
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import type { KeyState, PublicJwk } from '../../src/db/database.js'
import { Keyring, type LoadedKey } from '../../src/keys/keyring.js'

const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })

function key (kid: string, state: KeyState): LoadedKey {
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } as unknown as PublicJwk
  return { kid, state, jwk, publicKey, publicPem: '', privateKey: undefined, publishedAt: new Date(0), promotedAt: null }
}

t.test('the JWKS lists its keys in the kids\' code-unit order, whatever the order they came in or their states', async (t) => {
  const kids = ['qsx-lower', 'XpwQ-upper', 'aaQ1', 'zzQ2', '-dash', '_underscore', 'Zeta']
  const keyring = new Keyring()
  keyring.replace(kids.map((kid, i) => key(kid, i % 2 === 0 ? 'current' : 'previous')))
  const expected = [...kids].sort()
  t.same(keyring.jwks.kids, expected)
  t.same(expected, ['-dash', 'XpwQ-upper', 'Zeta', '_underscore', 'aaQ1', 'qsx-lower', 'zzQ2'], 'upper case before lower, as bytes')
  const etag = keyring.jwks.etag
  keyring.replace([...kids].reverse().map((kid) => key(kid, 'previous')))
  t.equal(keyring.jwks.etag, etag, 'another order in, another state: the same body and ETag')
})

t.test('the version moves when a kid or a state changes, not on a reload that finds the same keys', async (t) => {
  const keyring = new Keyring()
  keyring.replace([key('k1', 'current')])
  const first = keyring.version
  keyring.replace([key('k1', 'current')])
  t.equal(keyring.version, first, 'the same keys: remembered tokens stay remembered')
  keyring.replace([key('k1', 'previous'), key('k2', 'current')])
  t.equal(keyring.version, first + 1, 'a new key and a state changed')
  keyring.replace([key('k2', 'current')])
  t.equal(keyring.version, first + 2, 'a key gone')
})

t.test('catchUp reloads at most once per cooldown, shares a running reload, and skips kids that are held or not shaped as ours', async (t) => {
  const held = 'H'.repeat(43)
  const fresh = 'F'.repeat(43)
  const forged = 'X'.repeat(43)
  const keyring = new Keyring()
  keyring.replace([key(held, 'current')])
  t.equal(await keyring.catchUp(fresh), false, 'no reload set: refused as before')
  let reloads = 0
  let now = 0
  keyring.catchUpWith({
    cooldownMs: 1000,
    now: () => now,
    reload: async () => {
      reloads++
      await new Promise((resolve) => setImmediate(resolve))
      keyring.replace([key(held, 'previous'), key(fresh, 'current')])
    }
  })
  t.equal(await keyring.catchUp('short'), false)
  t.equal(await keyring.catchUp(held), false)
  t.equal(reloads, 0, 'a malformed kid or one held reloads nothing')
  t.same(await Promise.all([keyring.catchUp(fresh), keyring.catchUp(fresh), keyring.catchUp(forged)]), [true, true, false], 'requests meeting a running reload wait for it')
  t.equal(reloads, 1)
  now = 999
  t.equal(await keyring.catchUp(forged), false)
  t.equal(reloads, 1, 'within the cooldown: refused without a reload')
  now = 1000
  t.equal(await keyring.catchUp(forged), false)
  t.equal(reloads, 2, 'past it: one more reload')
})
