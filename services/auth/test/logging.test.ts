import { memorySink } from '@tessera/testkit'
import { sql } from 'kysely'
import t from 'tap'
import { createLogger, redactSecrets } from '../src/logging.js'
import { testConnection } from './helpers/db.js'

const SECRET_FIELDS = ['password', 'current_password', 'new_password', 'access_token', 'refresh_token', 'token', 'refresh', 'access', 'authorization', 'cookie', 'set-cookie', 'kek', 'private_key_enc', 'privateKey']

function capture (): { logger: ReturnType<typeof createLogger>, text: () => string } {
  const sink = memorySink()
  return { logger: createLogger({ logLevel: 'info' }, sink.stream), text: sink.text }
}

/** { a: { b: { [key]: value } } } with `depth` levels above the key. */
function nested (depth: number, key: string, value: string): Record<string, unknown> {
  let object: Record<string, unknown> = { [key]: value, kept: `visible-${depth}-${key}` }
  for (let i = 0; i < depth; i++) object = { [`level${i}`]: object }
  return object
}

t.test('every secret field is redacted at the top level and three levels down', async (t) => {
  const { logger, text } = capture()
  const secrets: string[] = []
  for (const key of SECRET_FIELDS) {
    for (let depth = 0; depth <= 3; depth++) {
      const secret = `s3cret-${key}-${depth}-value`
      secrets.push(secret)
      logger.info(nested(depth, key, secret), 'probe')
    }
  }
  const out = text()
  for (const secret of secrets) t.notOk(out.includes(secret), `${secret} is not in the log`)
  t.equal(out.split('[redacted]').length - 1, SECRET_FIELDS.length * 4, 'each one replaced by [redacted]')
  for (const key of SECRET_FIELDS) t.ok(out.includes(`visible-3-${key}`), 'neighbouring fields are kept')
})

t.test('secrets deeper than three levels, in arrays, in any letter case', async (t) => {
  const { logger, text } = capture()
  logger.info({ a: { b: { c: { d: { e: { password: 'deep-secret-1' } } } } }, list: [{ refresh_token: 'array-secret-2' }], headers: { Authorization: 'Bearer case-secret-3' } }, 'probe')
  const out = text()
  for (const secret of ['deep-secret-1', 'array-secret-2', 'case-secret-3']) t.notOk(out.includes(secret), `${secret} redacted`)
  t.equal(out.split('[redacted]').length - 1, 3)
})

t.test('a name is judged the same on every line, and past the names kept, judged each time', async (t) => {
  const again = { Refresh_Token: 'first', route: '/x' }
  t.same(redactSecrets(again), { Refresh_Token: '[redacted]', route: '/x' })
  t.same(redactSecrets(again), { Refresh_Token: '[redacted]', route: '/x' }, 'the second time, from what was kept')
  // More names than are kept (logging.ts, JUDGED_NAMES): those past the bound are judged each time.
  const many = Object.fromEntries(Array.from({ length: 1100 }, (_, i) => [`member${i}`, i]))
  t.equal(redactSecrets(many), many, 'none of them a secret')
  for (const name of ['REFRESH-token', 'Set_Cookie', 'PassWord']) {
    const late = { [name]: 'late-secret', route: '/x' }
    t.same(redactSecrets(late), { [name]: '[redacted]', route: '/x' }, `${name}, seen past the bound: redacted`)
    t.same(redactSecrets(late), { [name]: '[redacted]', route: '/x' }, `${name}, again`)
  }
  t.same(redactSecrets({ member5: 'x', member1099: 'y' }), { member5: 'x', member1099: 'y' }, 'names within and past the bound, kept')
})

t.test('objects without secrets are logged as they are, errors keep their serializer', async (t) => {
  const { logger, text } = capture()
  const plain = { method: 'GET', route: '/x', nested: { n: 1 } }
  t.equal(redactSecrets(plain), plain, 'no copy when nothing is secret')
  logger.error({ err: new Error('boom') }, 'failed')
  t.match(text(), /"err":\{"type":"Error","message":"boom","stack":/)
})

t.test('a request-shaped object loses its credentials', async (t) => {
  const { logger, text } = capture()
  logger.info({
    req: { headers: { authorization: 'Bearer eyJhbGciOi.secret.sig', cookie: 'sid=abc123secret', 'user-agent': 'curl/8' } },
    res: { headers: { 'set-cookie': 'sid=def456secret' } },
    body: { grant_type: 'password', username: 'lee', password: 'hunter2hunter2' }
  }, 'request')
  const out = text()
  for (const secret of ['eyJhbGciOi', 'abc123secret', 'def456secret', 'hunter2hunter2']) t.notOk(out.includes(secret), `${secret} redacted`)
  t.match(out, /"user-agent":"curl\/8"/)
  t.match(out, /"username":"lee"/)
})

t.test('camelCase and hash spellings, secrets inside errors, and anything past the depth limit are redacted', async (t) => {
  const { logger, text } = capture()
  logger.info({ refreshToken: 'camel-secret-1', accessToken: 'camel-secret-2', currentPassword: 'camel-secret-3', newPassword: 'camel-secret-4', password_hash: '$argon2id$hash-secret-5', client_secret: 'client-secret-6' }, 'probe')
  const failed = Object.assign(new Error('login failed'), { password: 'error-secret-7', cause: { refresh_token: 'cause-secret-8' } })
  logger.error({ err: failed }, 'failed')
  let deep: Record<string, unknown> = { note: 'deep-secret-9' }
  for (let i = 0; i < 12; i++) deep = { [`level${i}`]: deep }
  logger.info(deep, 'probe')
  const out = text()
  for (let i = 1; i <= 9; i++) t.notOk(new RegExp(`secret-${i}`).test(out), `secret ${i} redacted`)
  t.match(out, /"err":\{"type":"Error","message":"login failed"/, 'the error keeps its type and message')
})

t.test("Postgres's detail of a violated CHECK or NOT NULL, the whole row, is not logged; its other fields are", async (t) => {
  const { db } = await testConnection(t)
  const refused = await sql`INSERT INTO users (username, password_hash) VALUES ('Not Allowed', '$argon2id$row-secret-hash')`.execute(db).then(() => undefined, (err: unknown) => err)
  t.match(refused, { code: '23514', detail: /^Failing row contains .*row-secret-hash/ }, 'a real violation, its row in the detail')
  const { logger, text } = capture()
  logger.error({ err: refused }, 'unexpected error')
  const out = text()
  t.notOk(out.includes('row-secret-hash'), 'the row is not in the log')
  t.match(out, /"detail":"Failing row contains \[redacted\]"/, 'the detail says what it was')
  t.match(out, /"code":"23514".*"constraint":"users_username_check"/, 'the code and the constraint stay')
})
