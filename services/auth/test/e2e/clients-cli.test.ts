/**
 * `tessera clients …` as an operator runs it: a spawned CLI against a real
 * database, every subcommand with --json and in words, and its failures.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { postJson, signUpOver, within } from '../helpers/http.js'
import { runCli, startServer } from '../helpers/server.js'
import { buildTestApp } from '../helpers/app.js'
import { secretDigest } from '../../src/clients/secret.js'

// About a hundred CLI processes, each a cold Node start, and a server of two workers: on a loaded
// machine (load 12) the file took 170 s, near tap's 180 s, which is not what it tests.
t.setTimeout(600_000)

t.test('clients create, list, show, rotate-secret, disable, delete', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url }
  const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url) })

  const created = await runCli(['clients', 'create', 'indexer', '--confidential', '--scopes', 'notes:read notes:write', '--resources', 'urn:tessera:notes,https://api.example/', '--json'], env)
  t.equal(created.code, 0, created.stderr)
  const client = JSON.parse(created.stdout)
  t.match(client, { client_id: 'indexer', type: 'confidential', disabled_at: null })
  // Not in the t.match: it would take longer lists.
  t.same({ grants: client.grants, scopes: client.scopes, resources: client.resources }, { grants: ['client_credentials'], scopes: ['notes:read', 'notes:write'], resources: ['urn:tessera:notes', 'https://api.example/'] })
  t.match(client.client_secret, /^[A-Za-z0-9_-]{43}$/, 'the secret, once')
  const cc = async (secret: string): Promise<number> => (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'client_credentials', client_id: 'indexer', client_secret: secret } })).statusCode
  t.equal(await cc(client.client_secret as string), 200, 'the printed secret works')

  const human = await runCli(['clients', 'create', 'spa', '--grants', 'password,refresh_token', '--scopes', 'notes:read'], env)
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /^client_id {3}spa\ntype {8}public\n/)
  t.notMatch(human.stdout, /client_secret/, 'a public client has no secret')

  const shown = await runCli(['clients', 'show', 'indexer', '--json'], env)
  t.notOk('client_secret' in JSON.parse(shown.stdout), 'show never prints the secret')
  t.notMatch((await runCli(['clients', 'show', 'indexer'], env)).stdout, new RegExp(client.client_secret as string))
  const listed = await runCli(['clients', 'list', '--json'], env)
  t.same((JSON.parse(listed.stdout) as Array<{ client_id: string }>).map((c) => c.client_id), ['indexer', 'spa', 'tessera'], 'the default client is there from the first start')
  t.match((await runCli(['clients', 'list'], env)).stdout, /^client_id +type +grants +resources +state\n/)

  const rotated = await runCli(['clients', 'rotate-secret', 'indexer', '--grace', '1h', '--json'], env)
  t.equal(rotated.code, 0, rotated.stderr)
  const { client_secret: fresh, previous_secret_expires_at: until } = JSON.parse(rotated.stdout)
  t.ok(Date.parse(until) > Date.now() + 3500_000, 'the old secret works for the grace period')
  t.equal(await cc(client.client_secret as string), 200, 'old secret, inside the grace')
  t.equal(await cc(fresh as string), 200, 'new secret')
  t.match((await runCli(['clients', 'show', 'indexer'], env)).stdout, /old secret {2}works until /)
  // The grace over (set in the past, as an hour passing would): said as over, not as a time still to come.
  await ctx.connection.db.updateTable('clients').set({ previous_secret_expires_at: new Date(Date.now() - 1000) }).where('client_id', '=', 'indexer').execute()
  t.match((await runCli(['clients', 'show', 'indexer'], env)).stdout, /old secret {2}stopped working at \d{4}-/)

  const disabled = await runCli(['clients', 'disable', 'indexer', '--json'], env)
  t.same(JSON.parse(disabled.stdout), { client_id: 'indexer', disabled: true, sessions_ended: 0 })
  t.equal(await cc(fresh as string), 401)
  t.equal((await runCli(['clients', 'disable', 'indexer'], env)).stdout, 'already disabled indexer; ended 0 session(s)\n')
  t.equal((await runCli(['clients', 'delete', 'indexer'], env)).stdout, 'deleted indexer; ended 0 session(s)\n')

  const audit = await ctx.connection.db.selectFrom('audit_events').select(['type', 'actor', 'detail']).where('type', 'like', 'client.%').orderBy('id').execute()
  t.same(audit.map((e) => e.type), ['client.created', 'client.created', 'client.created', 'client.secret_rotated', 'client.disabled', 'client.authentication_failed', 'client.deleted'],
    'the default client at start, two creates, the rotation, the disable, the disabled client\'s refused request, the delete')
  const byOperator = audit.filter((e) => e.type !== 'client.authentication_failed' && e.detail.client_id !== 'tessera')
  t.ok(byOperator.length === 5 && byOperator.every((e) => e.actor === 'operator'), 'operator commands are audited as the operator')
  t.notOk(JSON.stringify(audit).includes(client.client_secret as string) || JSON.stringify(audit).includes(fresh as string), 'no secret in the audit trail')
})

t.test('clients: failures are one line and a non-zero exit', async (t) => {
  const env = { DATABASE_URL: await createTestDatabase(t) }
  const cases: Array<[string[], number, RegExp]> = [
    [['clients', 'create', 'bad id'], 2, /^tessera: client_id: must be 1 to 64/],
    [['clients', 'create', '0B8E1F7A-5C3D-4E2F-9A1B-2C3D4E5F6A7B', '--confidential'], 2, /^tessera: client_id: must not look like a UUID, which a user id is/],
    [['clients', 'create', 'system', '--confidential'], 2, /^tessera: client_id: system names an actor of the audit trail \(operator, system, anonymous\); choose another\n$/],
    [['clients', 'create', 'Operator'], 2, /^tessera: client_id: Operator names an actor of the audit trail/],
    [['clients', 'create', 'x', '--grants', 'implicit'], 2, /^tessera: grants: expected some of password, refresh_token, client_credentials/],
    [['clients', 'create', 'x', '--grants', 'client_credentials'], 2, /public client cannot use client_credentials; add --confidential/],
    [['clients', 'create', 'x', '--confidential', '--resources', 'notes'], 2, /^tessera: resources: "notes" is not an absolute URI/],
    [['clients', 'create', 'x', '--colour', 'red'], 2, /^tessera: --colour is not a flag of clients create\nusage: /],
    [['clients', 'create', 'tessera'], 1, /^tessera: a client named tessera already exists\n$/],
    [['clients', 'show', 'nobody'], 1, /^tessera: no client named nobody\n$/],
    [['clients', 'rotate-secret', 'tessera'], 1, /^tessera: tessera is a public client: it has no secret\n$/],
    [['clients', 'rotate-secret', 'nobody'], 1, /^tessera: no client named nobody\n$/],
    [['clients', 'rotate-secret', 'tessera', '--grace', 'soon'], 2, /^tessera: --grace: expected a duration/],
    [['clients', 'disable', 'nobody'], 1, /^tessera: no client named nobody\n$/],
    [['clients', 'enable', 'nobody'], 1, /^tessera: no client named nobody\n$/],
    [['clients', 'delete', 'nobody'], 1, /^tessera: no client named nobody\n$/],
    [['clients', 'show'], 2, /^tessera: usage: tessera clients create/],
    [['clients', 'frobnicate', 'x'], 2, /^tessera: usage: tessera clients create/],
    // A word or a flag the action does not take is refused, not ignored: `delete a b` deleted a alone, with exit 0.
    [['clients', 'delete', 'tessera', 'other'], 2, /^tessera: usage: tessera clients create/],
    [['clients', 'list', 'extra'], 2, /^tessera: usage: tessera clients create/],
    [['clients', 'list', '--grants', 'x'], 2, /^tessera: --grants is not a flag of clients list\nusage: /],
    [['clients', 'show', 'tessera', '--grace', '5h'], 2, /^tessera: --grace is not a flag of clients show\nusage: /],
    [['clients', 'disable', 'tessera', '--confidential'], 2, /^tessera: --confidential is not a flag of clients disable\nusage: /]
  ]
  // The default client comes with the first start of a server; here, with the first create.
  t.equal((await runCli(['clients', 'create', 'tessera'], env)).code, 0)
  for (const [args, code, stderr] of cases) {
    const res = await runCli(args, env)
    t.equal(res.code, code, `${args.join(' ')}: exit ${code}`)
    t.match(res.stderr, stderr, args.join(' '))
  }
  t.match(JSON.parse((await runCli(['clients', 'show', 'tessera', '--json'], env)).stdout), { client_id: 'tessera', disabled_at: null }, 'none of the refused commands ran')
  // Nothing listens on port 1: the duration is refused before a connection is tried.
  const unreachable = await runCli(['clients', 'rotate-secret', 'tessera', '--grace=-5'], { DATABASE_URL: 'postgres://tessera@127.0.0.1:1/tessera' })
  t.equal(unreachable.code, 2, 'a bad --grace is a usage error before the database is opened')
  t.match(unreachable.stderr, /^tessera: --grace: expected a duration such as 0, 300s, 1h or 24h\n$/)
  // A value with a leading dash, given as its own word, is the flag's value when the flag's values can never be flags: Node's parser called `--grace -5` ambiguous, never reaching the duration's message.
  for (const [args, stderr] of [
    [['rotate-secret', 'tessera', '--grace', '-5'], /^tessera: --grace: expected a duration such as 0, 300s, 1h or 24h\n$/],
    [['create', 'x', '--grants', '-x'], /^tessera: grants: expected some of password, refresh_token, client_credentials\n$/],
    [['create', 'x', '--confidential', '--resources', '-x'], /^tessera: resources: "-x" is not an absolute URI without a fragment \(RFC 8707\)\n$/],
    [['show', 'tessera', '--grace', '-5'], /^tessera: --grace is not a flag of clients show\nusage: [^\n]+\n$/]
  ] as const) {
    const dashed = await runCli(['clients', ...args], env)
    t.same([dashed.code, dashed.stdout], [2, ''], `clients ${args.join(' ')}: exit 2`)
    t.match(dashed.stderr, stderr, `clients ${args.join(' ')}: refused in its flag's words`)
  }
  // A flag where a value should be is a missing value, as Node says; --scopes is never joined, as `-x` is a scope name.
  for (const args of [['rotate-secret', 'tessera', '--grace', '--json'], ['create', 'x', '--scopes', '-x']]) {
    const missing = await runCli(['clients', ...args], { DATABASE_URL: 'postgres://tessera@127.0.0.1:1/tessera' })
    t.equal(missing.code, 2)
    t.match(missing.stderr, /^tessera: Option '--\w+' argument is ambiguous\. .* use '--\w+=-XYZ'\.\nusage: /, `clients ${args.join(' ')}: Node's three lines read as one, then the usage`)
  }
  // An id no client can have (outside the pattern clients.client_id's CHECK holds every id to) is a usage error for every action, before the database is opened.
  for (const action of ['create', 'show', 'rotate-secret', 'disable', 'enable', 'delete']) {
    for (const id of ['', 'bad id', 'x'.repeat(65), 'é', '\u{1f642}', 'a\nb']) {
      const refused = await runCli(['clients', action, id], { DATABASE_URL: 'postgres://tessera@127.0.0.1:1/tessera' })
      t.same([refused.code, refused.stdout, refused.stderr], [2, '', 'tessera: client_id: must be 1 to 64 of A-Z a-z 0-9 . _ -\n'], `clients ${action} ${JSON.stringify(id.slice(0, 8))}`)
    }
  }
  // The rules on new ids that came later (not shaped like a UUID, not an actor's name) are create's alone: a client registered before them is still found.
  for (const id of ['0B8E1F7A-5C3D-4E2F-9A1B-2C3D4E5F6A7B', 'system']) {
    const looked = await runCli(['clients', 'show', id], env)
    t.same([looked.code, looked.stderr], [1, `tessera: no client named ${id}\n`], `clients show ${id}: looked up`)
  }
})

t.test('create refuses scopes and resources that no token could carry', async (t) => {
  const url = await createTestDatabase(t)
  const issuer = 'https://auth.example/tessera'
  // TESSERA_ISSUER as an operator may write it, with a trailing slash that the issuer drops.
  const env = { DATABASE_URL: url, TESSERA_ISSUER: `${issuer}/` }
  const ctx = await buildTestApp(t, { TESSERA_ISSUER: issuer }, { connection: await testConnection(t, url) })
  const refused: Array<[string[], RegExp]> = [
    // Every grant refused it, invalid_target: the issuer is the aud of refresh tokens.
    [['--resources', `urn:tessera:notes,${issuer}`], /^tessera: resources: https:\/\/auth\.example\/tessera is TESSERA_ISSUER, the audience of refresh tokens; every grant refuses it as a resource \(invalid_target\): name the API's own URI\n$/],
    // Registered as no scopes, every token then carried `scope: ""`.
    [['--scopes', ''], /^tessera: scopes: expected at least one scope \(leave out --scopes for TESSERA_SCOPES\)\n$/],
    [['--scopes', '   '], /^tessera: scopes: expected at least one scope/],
    // A comma split scopes apart, where a token request's scope would take it as part of one name.
    [['--scopes', 'read,write'], /^tessera: scopes: "read,write": separate scopes with spaces, not commas \(--scopes "a b"\)\n$/],
    // Outside RFC 6749 §3.3's scope-token; a tab was taken as a separator, as the token endpoint does not.
    [['--scopes', 'a\tb'], /^tessera: scopes: "a\\tb" is not a scope token \(RFC 6749 §3\.3: printable ASCII other than space, double quote and backslash\)\n$/],
    [['--scopes', 'read "write"'], /^tessera: scopes: "\\"write\\"" is not a scope token/],
    [['--scopes', 'a\\b'], /^tessera: scopes: "a\\\\b" is not a scope token/],
    [['--scopes', 'caf\u00e9'], /^tessera: scopes: "caf\u00e9" is not a scope token/]
  ]
  for (const [flags, stderr] of refused) {
    const res = await runCli(['clients', 'create', 'svc', '--confidential', ...flags], env)
    t.same([res.code, res.stdout], [2, ''], `${flags.join(' ')}: exit 2`)
    t.match(res.stderr, stderr, `${flags.join(' ')}: said why`)
  }
  t.equal(await ctx.connection.db.selectFrom('clients').select('client_id').where('client_id', '=', 'svc').executeTakeFirst(), undefined, 'none was registered')

  // Runs of spaces and spaces at the ends are forgiven, as in a token request; the issuer with a path below it is another URI, which the grants serve.
  const made = await runCli(['clients', 'create', 'svc', '--confidential', '--scopes', ' notes:read   notes:write ', '--resources', `${issuer}/notes`, '--json'], env)
  t.equal(made.code, 0, made.stderr)
  const client = JSON.parse(made.stdout)
  t.same([client.scopes, client.resources], [['notes:read', 'notes:write'], [`${issuer}/notes`]])
  const cc = async (payload: Record<string, string>): Promise<{ statusCode: number, body: Record<string, unknown> }> => {
    const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'client_credentials', client_id: 'svc', client_secret: client.client_secret, ...payload } })
    return { statusCode: res.statusCode, body: res.json() }
  }
  t.match(await cc({ resource: `${issuer}/notes` }), { statusCode: 200, body: { scope: 'notes:read notes:write' } }, 'the registered resource is served, with the scopes as given')
  t.match(await cc({ resource: issuer }), { statusCode: 400, body: { error: 'invalid_target' } }, 'the issuer, as the CLI refused it, is refused by the grant')
})

t.test('in words, create prints a confidential client\'s secret once; rotate-secret without --grace keeps the old one working 24 hours (docs/operators.md)', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url }
  const created = await runCli(['clients', 'create', 'roller', '--confidential'], env)
  t.equal(created.code, 0, created.stderr)
  const [, printed = ''] = /\nclient_secret ([A-Za-z0-9_-]{43})\n\(shown once/.exec(created.stdout) ?? []
  const { db } = await testConnection(t, url)
  const row = await db.selectFrom('clients').select('secret_digest').where('client_id', '=', 'roller').executeTakeFirstOrThrow()
  t.same(row.secret_digest, secretDigest(printed), 'the secret printed is the one whose digest is stored')
  t.notMatch((await runCli(['clients', 'show', 'roller'], env)).stdout, printed, 'and is not shown again')
  const before = Date.now()
  const rotated = await runCli(['clients', 'rotate-secret', 'roller', '--json'], env)
  t.equal(rotated.code, 0, rotated.stderr)
  const until = Date.parse(String(JSON.parse(rotated.stdout).previous_secret_expires_at))
  t.ok(until >= before + 86_400_000 - 1000 && until <= Date.now() + 86_400_000 + 1000, 'the old secret works until a day from now', { stdout: rotated.stdout })
})

t.test('rotate-secret --keep-old: a rotation whose output was lost is undone without an outage (docs/operators.md)', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url }
  const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  const cc = async (secret: string): Promise<number> => (await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret } })).statusCode
  const created = await runCli(['clients', 'create', 'svc', '--confidential', '--json'], env)
  t.equal(created.code, 0, created.stderr)
  const deployed = JSON.parse(created.stdout).client_secret as string

  const noOld = await runCli(['clients', 'rotate-secret', 'svc', '--keep-old'], env)
  t.same([noOld.code, noOld.stdout, noOld.stderr], [1, '', 'tessera: client svc has no old secret in its grace period; rotate without --keep-old\n'], 'never rotated: nothing to keep, refused')
  t.equal(await cc(deployed), 200, 'and nothing changed')

  // The rotation whose output never reached the operator.
  const lostRun = await runCli(['clients', 'rotate-secret', 'svc', '--grace', '1h', '--json'], env)
  t.equal(lostRun.code, 0, lostRun.stderr)
  const lost = JSON.parse(lostRun.stdout).client_secret as string
  const shown = JSON.parse((await runCli(['clients', 'show', 'svc', '--json'], env)).stdout).previous_secret_expires_at as string

  const kept = await runCli(['clients', 'rotate-secret', 'svc', '--keep-old', '--json'], env)
  t.equal(kept.code, 0, kept.stderr)
  const answer = JSON.parse(kept.stdout)
  t.same(Object.keys(answer).sort(), ['client_id', 'client_secret', 'previous_secret_expires_at'], 'the same keys as a plain rotation\'s')
  t.match(answer, { client_id: 'svc', client_secret: /^[A-Za-z0-9_-]{43}$/, previous_secret_expires_at: shown }, 'the old secret keeps the deadline `clients show` said')
  t.equal(await cc(deployed), 200, 'the deployed secret still works')
  t.equal(await cc(lost), 401, 'the lost one no longer does')
  t.equal(await cc(answer.client_secret as string), 200, 'the new one works')

  const words = await runCli(['clients', 'rotate-secret', 'svc', '--keep-old', '--grace', '2h'], env)
  t.equal(words.code, 0, words.stderr)
  const [, fresh = '', until = ''] = /^client_secret ([A-Za-z0-9_-]{43})\n\(shown once\) the secret it replaces no longer works; the old secret works until (\S+)\n$/.exec(words.stdout) ?? []
  t.ok(Date.parse(until) > Date.now() + 7100_000, 'in words, with --grace: the old secret works two hours from now', { stdout: words.stdout })
  t.equal(await cc(answer.client_secret as string), 401, 'the secret it replaced stops')
  t.equal(await cc(deployed), 200)
  t.equal(await cc(fresh), 200)

  // Its grace over (set in the past, as the hours passing would).
  await ctx.connection.db.updateTable('clients').set({ previous_secret_expires_at: new Date(Date.now() - 1000) }).where('client_id', '=', 'svc').execute()
  const over = await runCli(['clients', 'rotate-secret', 'svc', '--keep-old', '--grace', '1h'], env)
  t.same([over.code, over.stdout, over.stderr], [1, '', 'tessera: client svc has no old secret in its grace period; rotate without --keep-old\n'], 'an old secret past its grace is not kept')
  t.equal(await cc(fresh), 200, 'and nothing changed')

  for (const [args, code, stderr] of [
    [['rotate-secret', 'tessera', '--keep-old'], 1, 'tessera: tessera is a public client: it has no secret\n'],
    [['rotate-secret', 'nobody', '--keep-old'], 1, 'tessera: no client named nobody\n'],
    [['show', 'svc', '--keep-old'], 2, /^tessera: --keep-old is not a flag of clients show\nusage: [^\n]+\n$/]
  ] as const) {
    const res = await runCli(['clients', ...args], env)
    t.same([res.code, res.stdout], [code, ''], `clients ${args.join(' ')}: exit ${code}`)
    t.match(res.stderr, stderr, `clients ${args.join(' ')}`)
  }
  // Usage errors, before the database is opened (nothing listens on port 1).
  for (const [grace, stderr] of [
    ['0', 'tessera: --grace 0 with --keep-old would drop the old secret it keeps\n'],
    ['0s', 'tessera: --grace 0 with --keep-old would drop the old secret it keeps\n'],
    ['soon', 'tessera: --grace: expected a duration such as 0, 300s, 1h or 24h\n']
  ] as const) {
    const res = await runCli(['clients', 'rotate-secret', 'svc', '--keep-old', '--grace', grace], { DATABASE_URL: 'postgres://tessera@127.0.0.1:1/tessera' })
    t.same([res.code, res.stdout, res.stderr], [2, '', stderr], `--keep-old --grace ${grace}`)
  }

  const audit = await ctx.connection.db.selectFrom('audit_events').select(['actor', 'detail']).where('type', '=', 'client.secret_rotated').orderBy('id').execute()
  t.same(audit.map((e) => [e.actor, e.detail.kept_old]), [['operator', false], ['operator', true], ['operator', true]], 'the lost rotation, then the two that kept the old secret; the refused ones wrote nothing')
  t.equal(audit[1]?.detail.previous_secret_expires_at, shown, 'the kept secret\'s deadline in the audit trail')
})

t.test('clients enable: the way back from disable, on both workers at once; the ended sessions stay ended, the secret stays (docs/operators.md)', async (t) => {
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url'), TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '100000' }
  const server = await startServer(t, env)
  const { db } = await testConnection(t, url)
  const made = await runCli(['clients', 'create', 'svc', '--confidential', '--json'], env)
  t.equal(made.code, 0, made.stderr)
  const secret = JSON.parse(made.stdout).client_secret as string
  const password = 'correct horse battery'
  await signUpOver(server.url, 'erin', password)

  /** Requests on fresh connections (the kernel spreads them over both workers: all 16 on one is 1 in 2^15), each answer as `status error`. */
  const round = async (body: (i: number) => Record<string, string>, n = 16): Promise<Array<{ answer: string, body: Record<string, unknown> }>> => {
    const replies = []
    for (let i = 0; i < n; i++) {
      const res = await postJson(`${server.url}/oauth/token`, body(i))
      replies.push({ answer: `${res.status} ${String(res.body.error ?? '')}`.trim(), body: res.body })
    }
    return replies
  }
  const distinct = (replies: Array<{ answer: string }>): string[] => [...new Set(replies.map((r) => r.answer))].sort()
  // The default client: no client_id.
  const login = (): Record<string, string> => ({ grant_type: 'password', username: 'erin', password })
  const service = (): Record<string, string> => ({ grant_type: 'client_credentials', client_id: 'svc', client_secret: secret })
  const [before] = await round(login, 1)
  const beforeRefresh = before?.body.refresh_token as string

  for (const id of ['tessera', 'svc']) t.equal((await runCli(['clients', 'disable', id], env)).code, 0)
  const refused = ['401 invalid_client']
  t.ok(await within(1000, async () => distinct(await round(service)).join() === refused.join(), 10) !== undefined, 'disabled: client_credentials refused on both workers')
  t.same(distinct(await round(login)), refused, 'logins with the default client refused')
  t.same(distinct(await round(() => ({ grant_type: 'refresh_token', refresh_token: beforeRefresh }))), refused, 'refreshes refused')

  const words = await runCli(['clients', 'enable', 'svc'], env)
  t.same([words.code, words.stderr], [0, ''])
  t.equal(words.stdout, 'enabled svc; the sessions its disable ended stay ended; its secrets are unchanged: if it was disabled because a secret leaked, run `tessera clients rotate-secret svc --grace 0` now\n', 'in words, with what it did not do')
  const json = await runCli(['clients', 'enable', 'tessera', '--json'], env)
  t.same([json.code, JSON.parse(json.stdout)], [0, { client_id: 'tessera', enabled: true, was_disabled: true }], '--json')

  const served = ['200']
  t.ok(await within(1000, async () => distinct(await round(service)).join() === served.join(), 10) !== undefined, 'the same secret is served again on both workers')
  const logins = await round(login)
  t.same(distinct(logins), served, 'logins with the default client served on both workers')
  t.same(distinct(await round((i) => ({ grant_type: 'refresh_token', refresh_token: logins[i]?.body.refresh_token as string }))), served, 'and their refreshes')
  t.same(distinct(await round(() => ({ grant_type: 'refresh_token', refresh_token: beforeRefresh }), 4)), ['400 invalid_grant'], 'the session the disable ended stays ended')
  t.match(await db.selectFrom('sessions').select('revoke_reason').where('id', '=', JSON.parse(Buffer.from(String(before?.body.access_token).split('.')[1] ?? '', 'base64url').toString()).sid).executeTakeFirst(), { revoke_reason: 'client_disabled' })

  const again = await runCli(['clients', 'enable', 'svc'], env)
  t.same([again.code, again.stdout, again.stderr], [0, 'already enabled svc\n', ''], 'already enabled: a success that says so')
  t.same(JSON.parse((await runCli(['clients', 'enable', 'tessera', '--json'], env)).stdout), { client_id: 'tessera', enabled: true, was_disabled: false })
  const unknown = await runCli(['clients', 'enable', 'nobody'], env)
  t.same([unknown.code, unknown.stdout, unknown.stderr], [1, '', 'tessera: no client named nobody\n'])
  for (const blank of ['', '  ']) {
    const usage = await runCli(['clients', 'enable', blank], env)
    t.same([usage.code, usage.stdout], [2, ''], `enable ${JSON.stringify(blank)}: a usage error`)
  }
  t.equal((await runCli(['clients', 'enable', 'svc', '--grace', '1h'], env)).code, 2, 'enable takes no flag of its own')

  const audit = await db.selectFrom('audit_events').select(['type', 'actor', 'detail']).where('type', 'in', ['client.disabled', 'client.enabled']).orderBy('id').execute()
  t.match(audit, [
    { type: 'client.disabled', actor: 'operator', detail: { client_id: 'tessera' } },
    { type: 'client.disabled', actor: 'operator', detail: { client_id: 'svc' } },
    { type: 'client.enabled', actor: 'operator', detail: { client_id: 'svc', disabled_at: /^\d{4}-/ } },
    { type: 'client.enabled', actor: 'operator', detail: { client_id: 'tessera', disabled_at: /^\d{4}-/ } }
  ], 'each enable audited once; the ones that changed nothing wrote nothing')
  t.equal(audit.length, 4)
})
