/**
 * multipart/form-data on SimpleJWT's routes, where DRF answers would not say
 * enough: the body's limit (DRF's is Django's own setting), what a file
 * costs, and that the parser is these routes' alone. What DRF answers to each
 * kind of multipart body is compared request for request in
 * test/e2e/simplejwt.test.ts.
 */
import t from 'tap'
import { Readable } from 'node:stream'
import { BODY_LIMIT } from '../../src/http/limits.js'
import { buildTestApp, signUp } from '../helpers/app.js'

const PASSWORD = 'correct horse battery'

function multipart (parts: Array<[name: string, value: string, filename?: string]>): string {
  return parts.map(([name, value, filename]) =>
    `--B\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? '' : `; filename="${filename}"`}\r\n\r\n${value}\r\n`).join('') + '--B--\r\n'
}
const MULTIPART = { 'content-type': 'multipart/form-data; boundary=B' }

t.test('a login posted as multipart/form-data on the compat route', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const ok = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: MULTIPART, payload: multipart([['username', 'alice'], ['password', PASSWORD]]) })
  t.equal(ok.statusCode, 200)
  t.same(Object.keys(ok.json()).sort(), ['access', 'refresh'])

  // A file part cut short by the body's end: its stream errors too, and the fields before it still count.
  const cut = multipart([['username', 'alice'], ['password', PASSWORD]]).replace(/--B--\r\n$/, '--B\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nxxxx')
  const cutShort = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: MULTIPART, payload: cut })
  t.equal(cutShort.statusCode, 200)
})

t.test('a multipart body is bounded like every other body', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const big = multipart([['username', 'alice'], ['password', PASSWORD], ['padding', 'x'.repeat(BODY_LIMIT)]])
  const declared = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: MULTIPART, payload: big })
  t.equal(declared.statusCode, 413, 'a Content-Length over the limit')
  t.same(declared.json(), { detail: `the body is larger than ${BODY_LIMIT} bytes` })

  // Chunked: no Content-Length to refuse up front, so the bytes are counted as they come.
  const streamed = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: MULTIPART, payload: Readable.from([Buffer.from(big)]) })
  t.equal(streamed.statusCode, 413, 'a chunked body past the limit')
  t.same(streamed.json(), { detail: `the body is larger than ${BODY_LIMIT} bytes` })

  // A file part is drained, never kept: one just under the limit beside the fields still logs in.
  const file = multipart([['username', 'alice'], ['password', PASSWORD], ['avatar', 'x'.repeat(BODY_LIMIT - 400), 'a.png']])
  t.ok(Buffer.byteLength(file) <= BODY_LIMIT)
  const withFile = await ctx.app.inject({ method: 'POST', url: '/api/token/', headers: MULTIPART, payload: file })
  t.equal(withFile.statusCode, 200, 'an extra file part is ignored, as DRF ignores it')
})

t.test('only the SimpleJWT routes take multipart: /oauth/token keeps RFC 6749\'s form and JSON', async (t) => {
  const ctx = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  await signUp(ctx.app, 'alice', PASSWORD)
  const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', headers: MULTIPART, payload: multipart([['grant_type', 'password'], ['username', 'alice'], ['password', PASSWORD]]) })
  t.same(res.json(), { error: 'invalid_request', error_description: 'unsupported content type; send application/json or application/x-www-form-urlencoded' })
  t.equal(res.statusCode, 400, 'RFC 6749 §5.2 answers a body it cannot read with 400')
  const users = await ctx.app.inject({ method: 'POST', url: '/v1/users', headers: MULTIPART, payload: multipart([['username', 'bob'], ['password', PASSWORD]]) })
  t.equal(users.statusCode, 415)
})
