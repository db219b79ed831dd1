/**
 * A form body's values arrive exactly as the client encoded them, or the
 * body is refused: bytes that are not UTF-8, raw or percent-escaped, and a
 * `%` that does not begin an escape are a 400 in the route's own format,
 * never read as U+FFFD or as the escape's literal text, which would make a
 * login with one password check another.
 */
import t from 'tap'
import { buildTestApp, signUp } from '../helpers/app.js'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const PREFIX = '/api/token'

t.test('percent-escapes that are not UTF-8, and bytes that are not: refused on every route that reads a form', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on', TESSERA_RATE_LIMIT: '1000000' })
  // Accounts whose passwords are what a lossy reader would make of the bodies below.
  await signUp(app, 'rawbyte', '\uFFFD correct horse')
  await signUp(app, 'literal', '%FF correct horse')
  const post = async (url: string, payload: string | Buffer) => await app.inject({ method: 'POST', url, headers: FORM, payload })

  // [what, the password's bytes in the body, the account /oauth/token's old reader logged in, SimpleJWT's]
  const refusals: Array<[string, string, string, string]> = [
    ['a raw byte that is not UTF-8', '\xFF+correct+horse', 'rawbyte', 'rawbyte'],
    ['a percent-escape of a byte that is not UTF-8', '%FF+correct+horse', 'literal', 'rawbyte'],
    ['a lone surrogate, percent-escaped', '%ED%A0%80+correct+horse', 'rawbyte', 'rawbyte'],
    ['an escape that is not one', '%FF+correct+horse%ZZ', 'literal', 'rawbyte'],
    ['a % at the end', '%FF+correct+horse%', 'literal', 'rawbyte']
  ]
  for (const [what, password, oauthUser, simplejwtUser] of refusals) {
    const token = await post('/oauth/token', Buffer.concat([Buffer.from(`grant_type=password&username=${oauthUser}&password=`), Buffer.from(password, 'latin1')]))
    t.equal(token.statusCode, 400, `${what}: /oauth/token`)
    t.same(token.json(), { error: 'invalid_request', error_description: 'the form body is not UTF-8 text as percent-encoding writes it; write a literal % as %25' }, what)

    const simplejwt = await post(`${PREFIX}/`, Buffer.concat([Buffer.from(`username=${simplejwtUser}&password=`), Buffer.from(password, 'latin1')]))
    t.equal(simplejwt.statusCode, 400, `${what}: SimpleJWT's login`)
    t.same(simplejwt.json(), { detail: 'the form body is not UTF-8 text as percent-encoding writes it; write a literal % as %25' }, what)
  }

  const signUpForm = await post('/v1/users', Buffer.from('username=a%FFb&password=correct+horse+battery'))
  t.equal(signUpForm.statusCode, 400)
  t.match(signUpForm.headers['content-type'], /^application\/problem\+json/)
  t.match(signUpForm.json(), { status: 400, detail: 'the form body is not UTF-8 text as percent-encoding writes it; write a literal % as %25' })
  const escapedName = await post('/oauth/token', Buffer.from('grant_type=password&user%FFname=x'))
  t.equal(escapedName.statusCode, 400, 'in a parameter\'s name too')

  // The same passwords, encoded as a form encodes them, are read exactly.
  for (const [username, password] of [['rawbyte', '\uFFFD correct horse'], ['literal', '%FF correct horse']] as const) {
    const encoded = await post('/oauth/token', new URLSearchParams({ grant_type: 'password', username, password }).toString())
    t.equal(encoded.statusCode, 200, `${username}: the password percent-encoded`)
    const compat = await post(`${PREFIX}/`, new URLSearchParams({ username, password }).toString())
    t.equal(compat.statusCode, 200, `${username}: the password percent-encoded, on SimpleJWT's login`)
  }
})

t.test('+ is a space, %2B a plus, %20 a space; a repeated parameter is still refused', async (t) => {
  const { app } = await buildTestApp(t)
  await signUp(app, 'plus', 'a+b c+d é')
  const post = async (payload: string) => await app.inject({ method: 'POST', url: '/oauth/token', headers: FORM, payload })
  t.equal((await post('grant_type=password&username=plus&password=a%2Bb+c%2Bd%20%C3%A9')).statusCode, 200)
  t.equal((await post('grant_type=password&username=plus&password=a+b+c+d+%C3%A9')).statusCode, 400, '+ is never a plus')
  const twice = await post('grant_type=password&username=plus&password=a&password=b')
  t.same(twice.json(), { error: 'invalid_request', error_description: 'password: is given more than once' })
  const protoTwice = await post('grant_type=password&username=plus&password=a%2Bb+c%2Bd%20%C3%A9&__proto__=a&__proto__=b&constructor=x')
  t.equal(protoTwice.statusCode, 200, '__proto__ and constructor are parameters like any other, and unknown ones are ignored')
})
