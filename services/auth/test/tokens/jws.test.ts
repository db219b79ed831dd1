import t from 'tap'
import { generateKeyPairSync, sign } from 'node:crypto'
import { compactJwsSegments, decodeJsonSegment, rs256SignatureValid, signCompactJws, type JwsHeader } from '../../src/tokens/jws.js'

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** The token as RFC 7515 §7.1 spells it, encoded from scratch every time. */
function referenceJws (header: JwsHeader, claims: object): string {
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}

t.test('the header segment, encoded once per kid and type, is the one each token would have had', async (t) => {
  const claims = { iss: 'https://issuer.example', sub: 'u1', iat: 1000, exp: 2000 }
  for (let round = 0; round < 2; round++) {
    for (const typ of ['at+jwt', 'rt+jwt'] as const) {
      for (const kid of ['k1', 'k2']) {
        const header: JwsHeader = { alg: 'RS256', kid, typ }
        const token = signCompactJws(header, claims, privateKey)
        t.equal(token, referenceJws(header, claims), `${typ} ${kid}, round ${round}`)
        const segments = compactJwsSegments(token)
        if (segments === undefined) throw new Error('not a compact JWS')
        t.same(decodeJsonSegment(segments[0]), header)
        t.ok(rs256SignatureValid(segments, publicKey))
      }
    }
  }
})

t.test('the header is written alg, kid, typ whatever order the caller built it in', async (t) => {
  const reordered = { typ: 'at+jwt', kid: 'k-order', alg: 'RS256' } as const
  const token = signCompactJws(reordered, { sub: 'u1' }, privateKey)
  t.equal(token.split('.')[0], b64({ alg: 'RS256', kid: 'k-order', typ: 'at+jwt' }))
})

t.test('past the cache bound the headers are still right: the cache starts over instead of growing', async (t) => {
  const claims = { sub: 'u1' }
  for (let i = 0; i < 200; i++) {
    const header: JwsHeader = { alg: 'RS256', kid: `kid-${i}`, typ: i % 2 === 0 ? 'at+jwt' : 'rt+jwt' }
    const token = signCompactJws(header, claims, privateKey)
    if (token.split('.')[0] !== b64(header)) t.fail(`header ${i} is wrong`)
  }
  const first: JwsHeader = { alg: 'RS256', kid: 'kid-0', typ: 'at+jwt' }
  t.equal(signCompactJws(first, claims, privateKey), referenceJws(first, claims), 'an evicted header is encoded again')
})

t.test('a segment is taken only as its bytes encode: no respelling through the unused bits of its last character', async (t) => {
  for (let length = 1; length <= 6; length++) {
    const bytes = Buffer.alloc(length, 0xa5)
    const segment = bytes.toString('base64url')
    const token = `${segment}.${segment}.${segment}`
    t.ok(compactJwsSegments(token) !== undefined, `${length} byte(s), as encoded: ${segment}`)
    if (segment.length % 4 === 0) continue
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const last = alphabet.indexOf(segment.slice(-1))
    const unusedBits = segment.length % 4 === 2 ? 4 : 2
    for (let bit = 0; bit < unusedBits; bit++) {
      const other = `${segment.slice(0, -1)}${alphabet[last ^ (1 << bit)] ?? ''}`
      t.ok(Buffer.from(other, 'base64url').equals(bytes), `${other} decodes to the same bytes`)
      t.equal(compactJwsSegments(`${other}.${segment}.${segment}`), undefined, `and is refused as a header, ${other}`)
      t.equal(compactJwsSegments(`${segment}.${segment}.${other}`), undefined, `and as a signature, ${other}`)
    }
  }
  t.equal(compactJwsSegments('abcde.abcd.abcd'), undefined, 'a length no bytes encode to (one character left over)')
})
