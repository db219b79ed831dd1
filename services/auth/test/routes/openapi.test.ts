/**
 * GET /openapi.json: a valid OpenAPI 3.1 document (checked by a real
 * validator) that covers every public route with its errors in the contract's
 * shape, and whose links (metadata, Location) lead somewhere.
 */
import t from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { Value } from '@sinclair/typebox/value'
import { DrfErrorBody } from '../../src/routes/openapi.js'
import { buildTestApp, login, servedRoutes, signUp } from '../helpers/app.js'

interface Operation {
  summary?: string
  tags?: string[]
  security?: Array<Record<string, string[]>>
  requestBody?: { required?: boolean, content: Record<string, { schema?: { required?: string[] } }> }
  responses: Record<string, { description?: string, content?: Record<string, { schema: { required?: string[], title?: string } }> }>
}
interface OpenApiDocument {
  openapi: string
  info: { description: string }
  paths: Record<string, Record<string, Operation>>
  components: { securitySchemes: Record<string, { type: string, scheme?: string }> }
}

/** Internal routes the gateway does not route, and so not in the public document. */
const INTERNAL = new Set(['/metrics'])

t.test('the document is valid OpenAPI 3.1 and covers every public route', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const doc = res.json<OpenApiDocument>()
  t.equal(doc.openapi, '3.1.0')

  const result = await new Validator().validate(structuredClone(doc) as never)
  t.same(result.errors, undefined, 'no validation errors')
  t.equal(result.valid, true)

  // As [method, OpenAPI path]: lower-case methods, {name} for :name.
  const routes = servedRoutes(app).map(([method, path]): [string, string] => [method.toLowerCase(), path.replace(/:([A-Za-z_]+)/g, '{$1}')])
  t.ok(routes.length >= 14, `found the route table (${routes.length} routes)`)
  for (const [method, path] of routes) {
    if (INTERNAL.has(path)) {
      t.notOk(doc.paths[path], `${path} is internal and left out`)
      continue
    }
    t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`)
  }

  t.match(doc.components.securitySchemes, { bearerAuth: { type: 'http', scheme: 'bearer' }, clientSecretBasic: { type: 'http', scheme: 'basic' } })
  const me = doc.paths['/v1/me']?.get
  t.same(me?.security, [{ bearerAuth: [] }], '/v1 routes need a Bearer token')
  t.same(me?.responses['4XX']?.content?.['application/problem+json']?.schema.required, ['type', 'title', 'status'])
  const token = doc.paths['/oauth/token']?.post
  t.same(token?.responses['4XX']?.content?.['application/json']?.schema.required, ['error', 'error_description'], '/oauth errors are RFC 6749')
  t.ok(token?.requestBody?.content['application/x-www-form-urlencoded'], 'the token endpoint takes a form body')
  t.same(token?.security, [{}, { clientSecretBasic: [] }])
  t.same(doc.paths['/v1/users']?.post?.requestBody?.content?.['application/json']?.schema?.required, ['username', 'password'])
  t.same(doc.paths['/v1/users']?.post?.requestBody?.content?.['application/x-www-form-urlencoded']?.schema?.required, ['username', 'password'], 'a form body too, as every route takes')
})

t.test('the documented error shapes are what the routes answer', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  const problemFields = doc.paths['/v1/me']?.get?.responses['4XX']?.content?.['application/problem+json']?.schema.required ?? []
  t.same([...problemFields].sort(), ['status', 'title', 'type'], 'the document requires the problem members every answer has')
  const unauthorized = await app.inject({ method: 'GET', url: '/v1/me' })
  t.equal(unauthorized.statusCode, 401)
  t.equal(unauthorized.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(Object.keys(unauthorized.json()).filter((k) => problemFields.includes(k)).sort(), [...problemFields].sort())
  t.match(unauthorized.json(), { instance: '/v1/me', request_id: unauthorized.headers['x-request-id'] }, 'Tessera\'s own problems carry the optional members too')
  const oauthFields = doc.paths['/oauth/token']?.post?.responses['4XX']?.content?.['application/json']?.schema.required ?? []
  const badGrant = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'nope' } })
  t.equal(badGrant.statusCode, 400)
  t.same(Object.keys(badGrant.json()).sort(), [...oauthFields].sort())
})

t.test('the /oauth error statuses the document lists are those the routes answer: an unreadable body is 400 invalid_request, not 415', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  for (const path of ['/oauth/token', '/oauth/revoke']) {
    const responses = doc.paths[path]?.post?.responses ?? {}
    const listed = [...Object.keys(responses).filter((status) => /^4\d\d$/.test(status)), ...responses['4XX']?.description?.match(/\b4\d\d\b/g) ?? []]
    t.same([...new Set(listed)].sort(), ['400', '401', '405', '413', '429'], `${path} lists the 4xx statuses it answers, on their own or in the 4XX range's description`)
    const unreadable = [
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/xml' },
      { 'content-type': 'application/json; charset=latin1' },
      { 'content-type': 'application/json', 'content-encoding': 'gzip' }
    ]
    for (const headers of unreadable) {
      const res = await app.inject({ method: 'POST', url: path, headers, payload: '{"grant_type":"password","token":"x"}' })
      t.equal(res.statusCode, 400, `${path}, ${JSON.stringify(headers)}: 400`)
      t.equal(res.json<{ error: string }>().error, 'invalid_request')
    }
  }
})

t.test('the token endpoint\'s summary and the document\'s description name every grant the metadata lists', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  const metadata = (await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json<{ grant_types_supported: string[] }>()
  t.ok(metadata.grant_types_supported.includes('client_credentials'))
  for (const grant of metadata.grant_types_supported) {
    t.match(doc.paths['/oauth/token']?.post?.summary, grant, `the summary names ${grant}`)
    t.match(doc.info.description, grant.replace('_', '-'), `the description names ${grant}`)
  }
})

t.test('a request body is required where the route needs one, and optional on logout, which answers without one', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  t.equal(doc.paths['/v1/logout']?.post?.requestBody?.required, false, 'logout\'s body is optional')
  for (const [method, path] of [['post', '/oauth/token'], ['post', '/oauth/revoke'], ['post', '/v1/users'], ['put', '/v1/password']] as const) {
    t.equal(doc.paths[path]?.[method]?.requestBody?.required, true, `${method.toUpperCase()} ${path} needs its body`)
  }
  await signUp(app, 'noor', 'correct horse battery')
  const tokens = await login(app, 'noor', 'correct horse battery')
  const out = await app.inject({ method: 'POST', url: '/v1/logout', headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(out.statusCode, 200, 'logout without a body')
  t.same(out.json(), { sessions_ended: 1 })
})

t.test('SimpleJWT\'s routes are documented as they answer: DRF\'s error shapes in application/json, and the fields each reads', async (t) => {
  const { app } = await buildTestApp(t, { TESSERA_SIMPLEJWT_COMPAT: 'on' })
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  const result = await new Validator().validate(structuredClone(doc) as never)
  t.same(result.errors, undefined, 'still valid OpenAPI 3.1')
  await signUp(app, 'drf', 'correct horse battery')

  const routes = [
    ['/api/token/', ['password', 'username']],
    ['/api/token/refresh/', ['refresh']],
    ['/api/token/verify/', ['token']],
    ['/api/token/blacklist/', ['refresh']]
  ] as const
  for (const [path, fields] of routes) {
    const operation = doc.paths[path]?.post
    t.same(operation?.tags, ['simplejwt'], `${path} is tagged`)
    t.type(operation?.summary, 'string', `${path} has a summary`)
    for (const range of ['4XX', '5XX']) {
      const content = operation?.responses[range]?.content ?? {}
      t.same(Object.keys(content), ['application/json'], `${path} ${range}: application/json, not problem+json`)
      t.equal(content['application/json']?.schema.title, 'DrfError')
    }
    const body = operation?.requestBody
    t.same(Object.keys(body?.content ?? {}).sort(), ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'], `${path} takes what DRF's parsers take`)
    t.same([...body?.content['application/json']?.schema?.required ?? []].sort(), fields, `${path} documents the fields it reads`)

    const empty = await app.inject({ method: 'POST', url: path, payload: {} })
    t.equal(empty.statusCode, 400)
    t.match(empty.headers['content-type'], /^application\/json/)
    t.same(Object.keys(empty.json()).sort(), fields, `${path} refuses a body without them, naming the documented fields`)
    t.ok(Value.Check(DrfErrorBody, empty.json()), `${path}: the answer fits the documented shape`)
  }

  const refusals = [
    await app.inject({ method: 'POST', url: '/api/token/', payload: { username: 'drf', password: 'wrong password' } }),
    await app.inject({ method: 'POST', url: '/api/token/verify/', payload: { token: 'not.a.token' } })
  ]
  t.same(refusals.map((res) => res.statusCode), [401, 401])
  t.same(refusals.map((res) => res.json()), [{ detail: 'No active account found with the given credentials' }, { detail: 'Token is invalid or expired', code: 'token_not_valid' }])
  for (const res of refusals) {
    t.match(res.headers['content-type'], /^application\/json/)
    t.ok(Value.Check(DrfErrorBody, res.json()), `${res.body} fits the documented shape`)
  }
  t.notOk(Value.Check(DrfErrorBody, { type: 'about:blank', title: 'Bad Request', status: 400 }), 'a problem does not')
})

t.test('sign-up and password change state the real username and password rules in words, while the schema keeps its looser bounds', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  const properties = (path: string, method: string): Record<string, { description?: string }> =>
    (doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema as { properties: Record<string, { description?: string }> }).properties
  const signUp = properties('/v1/users', 'post')
  t.match(signUp.username?.description, /3 to 64 of a-z, 0-9, "\.", "_", "-"/)
  t.match(signUp.password?.description, /8 to 256 characters/)
  t.match(properties('/v1/password', 'put').new_password?.description, /8 to 256 characters/)

  // The rules hold after NFKC and lower-casing: bounds on the raw text would refuse these.
  const wide = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'ＡＬＩＣＥ', password: 'e\u0301'.repeat(200) } })
  t.equal(wide.statusCode, 201, 'a full-width upper-case name, and 400 code points that are 200 once normalised')
  t.equal(wide.json<{ username: string }>().username, 'alice')
  const short = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'ab', password: 'correct horse battery' } })
  t.equal(short.json<{ detail: string }>().detail, 'username: must be 3 to 64 of a-z, 0-9, ".", "_", "-" (case-insensitive)', 'the domain\'s words, not a schema\'s')
})

t.test('service_documentation and the sign-up Location lead to routes that answer', async (t) => {
  const { app, config } = await buildTestApp(t)
  const metadata = (await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json<{ service_documentation: string }>()
  t.ok(metadata.service_documentation.startsWith(config.issuer))
  const docs = await app.inject({ method: 'GET', url: metadata.service_documentation.slice(config.issuer.length) })
  t.equal(docs.statusCode, 200, 'service_documentation answers')

  const created = await app.inject({ method: 'POST', url: '/v1/users', payload: { username: 'lou', password: 'correct horse battery' } })
  t.equal(created.statusCode, 201)
  const location = created.headers.location
  t.type(location, 'string')
  const tokens = await login(app, 'lou', 'correct horse battery')
  const followed = await app.inject({ method: 'GET', url: String(location), headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(followed.statusCode, 200, 'the Location answers for the new user')
  t.equal(followed.json<{ username: string }>().username, 'lou')
})
