/**
 * The compiled server, its own process, on a database of its own: an
 * address it cannot listen on stops it with one line naming the setting.
 */
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { runProcess, spawnProcess } from '@tessera/testkit'
import { createTestDatabase } from '../helpers.js'

const SERVER = fileURLToPath(new URL('../../dist/server.js', import.meta.url))
const databaseUrl = await createTestDatabase(t)

async function start (env: Record<string, string>): Promise<{ code: number | null, stderr: string }> {
  return await runProcess(process.execPath, [SERVER], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, PORT: '0', ...env } })
}

t.test('a HOST this machine cannot listen on, or a PORT taken, is named in the one line the start fails with', async (t) => {
  const unresolved = await start({ HOST: 'nosuch.invalid' })
  t.equal(unresolved.code, 1)
  t.match(unresolved.stderr, /^notes: HOST="nosuch\.invalid" does not resolve to an address \(getaddrinfo (ENOTFOUND|EAI_AGAIN) nosuch\.invalid\)\n$/)
  // TEST-NET-1 (RFC 5737): no machine has it.
  const elsewhere = await start({ HOST: '192.0.2.1' })
  t.equal(elsewhere.code, 1)
  t.match(elsewhere.stderr, /^notes: HOST="192\.0\.2\.1" is not an address of this machine \(listen EADDRNOTAVAIL: .*\)\n$/)

  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const port = (taken.address() as AddressInfo).port
  const inUse = await start({ HOST: '127.0.0.1', PORT: String(port) })
  t.equal(inUse.code, 1)
  t.match(inUse.stderr, new RegExp(`^notes: PORT=${port}: the address is already in use \\(another process listens there\\): listen EADDRINUSE: .*\\n$`))
})

t.test('a database it cannot reach or that refuses it, or a JWKS URL that is none, stops the start in one line as Tessera\'s, no stack', async (t) => {
  // A port of this run's own range that nothing listens on.
  const unreachable = await start({ DATABASE_URL: 'postgres://notes:pw@127.0.0.1:29651/tessera' })
  t.equal(unreachable.code, 1)
  t.equal(unreachable.stderr, 'notes: cannot reach the database: connect ECONNREFUSED 127.0.0.1:29651\n', 'before, "failed to start: Error: connect ECONNREFUSED …"')
  const url = new URL(databaseUrl)
  url.password = 'wrong-password'
  const refused = await start({ DATABASE_URL: url.toString() })
  t.equal(refused.code, 1)
  t.equal(refused.stderr, `notes: the database refused the connection: password authentication failed for user "${decodeURIComponent(url.username)}"\n`, 'before, "failed to start: error: password authentication failed …"')
  t.notMatch(refused.stderr, 'wrong-password')
  const jwks = await start({ NOTES_JWKS_URL: 'not a url' })
  t.equal(jwks.code, 1)
  t.equal(jwks.stderr, 'notes: NOTES_JWKS_URL="not a url" is invalid: expected a URL\n')
})

t.test('a NOTES_JWKS_URL or NOTES_ISSUER holding a password stops the start in one line that does not repeat it; notes never logged it as serving', async (t) => {
  const secret = 'JwksUrlSecret5d2e'
  for (const [name, value] of [['NOTES_JWKS_URL', `https://keys:${secret}@keys.example/jwks.json`], ['NOTES_ISSUER', `https://id:${secret}@id.example`]] as const) {
    const notes = spawnProcess(process.execPath, [SERVER], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, PORT: '0', HOST: '127.0.0.1', [name]: value } })
    t.teardown(async () => { await notes.stop('SIGKILL') })
    // Before the fix it served, and its "notes is serving" line carried the URL: waited for, or for the exit.
    const served = await notes.waitFor(/notes is serving/, 20_000).then(() => true, () => false)
    if (!served) await notes.closed
    t.equal(notes.child.exitCode, 1, `${name}: the start stops`)
    t.match(notes.stderr(), new RegExp(`^notes: ${name}=<hidden> is invalid: expected an http\\(s\\) URL.*, with no user name or password \\(fetch refuses a URL holding credentials\\)\\n$`), `${name}: one line naming it`)
    t.notMatch(notes.output(), secret, `${name}: without the password`)
  }
})

t.test('a process warning is one JSON warn line in the log, not Node\'s text on stderr', async (t) => {
  // A warning raised once notes serves, as a dependency's deprecation would be.
  const preload = 'data:text/javascript,setTimeout(() => { process.emitWarning("notes test warning", { type: "TestWarning", code: "NOTES_TEST", detail: "a second line" }) }, 1500)'
  const notes = spawnProcess(process.execPath, ['--import', preload, SERVER], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, PORT: '0', HOST: '127.0.0.1' } })
  t.teardown(async () => { await notes.stop('SIGKILL') })
  await notes.waitFor(/"msg":"process warning"/, 20_000)
  await notes.stop('SIGTERM')
  t.equal(notes.stderr(), '', 'nothing on stderr')
  const lines = notes.stdout().split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { msg: string, level: number, warning?: unknown })
  const warning = lines.find((line) => line.msg === 'process warning')
  t.same(warning?.warning, { name: 'TestWarning', code: 'NOTES_TEST', message: 'notes test warning', detail: 'a second line' }, 'name, code, message and detail')
  t.equal(warning?.level, 40, 'at warn')
})
