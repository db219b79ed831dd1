/**
 * A JSON body whose object names a member twice is refused, as a repeated
 * form parameter is (RFC 6749 §3.1), in each route's own error format; the
 * scan reads names only where JSON puts them.
 */
import t from 'tap'
import { firstRepeatedMember } from '../../src/http/json-body.js'
import { buildTestApp, signUp } from '../helpers/app.js'

t.test('the first member named twice in one object, decoded, and nothing else', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['{}', undefined],
    ['{"a":1,"b":2}', undefined],
    ['{"a":1,"a":2}', 'a'],
    [' { "a" : "x" , "b" : { "a" : 1 } , "c" : [ { "a" : 1 } , { "a" : 2 } ] } ', undefined],
    ['{"a":{"b":1,"b":2}}', 'b'],
    ['[{"a":1},{"a":1,"a":2}]', 'a'],
    ['{"a":"a","b":"a"}', undefined],
    ['{"a":["a","a"],"b":1}', undefined],
    ['{"a":"\\"a\\":1,{\\"a\\"","b":"}{][,"}', undefined],
    ['{"\\u0061":1,"a":2}', 'a'],
    ['{"a\\\\":1,"a\\\\":2}', 'a\\'],
    ['{"a\\"":1,"a":2}', undefined],
    ['{"x":{"y":[]},"z":{},"x":0}', 'x'],
    ['"a"', undefined],
    ['[1,"a","a"]', undefined]
  ]
  t.equal(firstRepeatedMember('{"a":1,"a'), undefined, 'text that is not JSON ends the scan rather than looping')
  for (const [text, repeated] of cases) {
    JSON.parse(text) // each case is valid JSON, as the parser hands it over
    t.equal(firstRepeatedMember(text), repeated, text)
  }
})

t.test('through the routes: 400 in the route\'s format, the name said back only when plain', async (t) => {
  const { app } = await buildTestApp(t)
  await signUp(app, 'una', 'correct horse battery')
  const json = async (url: string, payload: string) => await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload })

  const token = await json('/oauth/token', '{"grant_type":"password","username":"una","password":"correct horse battery","client_id":"other","client_id":"tessera"}')
  t.equal(token.statusCode, 400)
  t.same(token.json(), { error: 'invalid_request', error_description: 'the JSON body names "client_id" more than once' })

  const signUpTwice = await json('/v1/users', '{"username":"vic","password":"correct horse battery","password":"another horse battery"}')
  t.equal(signUpTwice.statusCode, 400)
  t.match(signUpTwice.headers['content-type'], /^application\/problem\+json/)
  t.match(signUpTwice.json(), { status: 400, detail: 'the JSON body names "password" more than once' })

  const odd = await json('/oauth/token', '{"grant_type":"password","<script>":1,"<script>":2}')
  t.same(odd.json(), { error: 'invalid_request', error_description: 'the JSON body names a member more than once' }, 'a name that is not plain text is not said back')

  const once = await json('/oauth/token', '{"grant_type":"password","username":"una","password":"correct horse battery","client_id":"tessera"}')
  t.equal(once.statusCode, 200, 'each member once: served')
})
