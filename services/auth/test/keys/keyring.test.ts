/**
 * keys/keyring.ts's JWKS body: its order is the kids' code-unit order, so
 * every instance serves the same body and ETag for the same keys whatever
 * its locale (localeCompare put `qsx…` before `XpwQ…`, and differed between
 * locales).
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
