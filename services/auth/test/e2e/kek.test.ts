/**
 * The key-encryption key, through the real processes: a wrong KEK stops the
 * server with one line, and `keys rewrap` moves every private half to a new
 * KEK, after which the old one is refused, the new one works, and tokens
 * issued before keep verifying.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { runProcess, spawnProcess } from '@tessera/testkit'
import t from 'tap'
import { readKekFile } from '../../src/keys/kek.js'
import { rewrapKeys } from '../../src/keys/rewrap.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { CLI_ENTRY, instancePids, runCli, SERVER_ENTRY, startServer } from '../helpers/server.js'
import { loginOver, refreshOver, remoteVerifier, signUpOver, verifyAccess, within } from '../helpers/http.js'

const ISSUER = 'http://tessera.test'

async function startExpectingFailure (env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const server = spawnProcess(process.execPath, [SERVER_ENTRY], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...env } })
  const timer = setTimeout(() => { void server.stop('SIGKILL') }, 60_000)
  const code = await server.closed
  clearTimeout(timer)
  return { code, stdout: server.stdout(), stderr: server.stderr() }
}

const kekText = (): string => randomBytes(32).toString('base64url')
const ONE_LINE = /^tessera: cannot decrypt the private half of signing key [A-Za-z0-9_-]{43}: this KEK \(TESSERA_KEK or TESSERA_KEK_FILE; with neither set, the file kek in TESSERA_DATA_DIR, made if it was missing\) is not the key it was encrypted with\n$/

t.test('wrong KEK stops the server with one line; rewrap moves to a new KEK and tokens keep verifying', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const oldKek = kekText()
  const newKek = kekText()
  const base = { DATABASE_URL: databaseUrl, TESSERA_ISSUER: ISSUER, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir }

  const first = await startServer(t, { ...base, TESSERA_KEK: oldKek })
  await signUpOver(first.url, 'quinn', 'correct horse battery')
  const tokens = await loginOver(first.url, 'quinn', 'correct horse battery')
  // A next key too, so rewrap has more than one private half to move.
  const rotated = await runCli(['keys', 'rotate'], { ...base, TESSERA_KEK: oldKek })
  t.equal(rotated.code, 0, rotated.stderr)
  t.match(rotated.stdout, /^created key [A-Za-z0-9_-]{43}: published now, not signing; running instances make it sign after their TESSERA_KEY_PUBLISH_LEAD \(\d+ s by this command's settings: at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\n$/, 'the time is said to be the command\'s reckoning')
  t.equal(await first.stop(), 0)

  const wrong = await startExpectingFailure({ ...base, TESSERA_KEK: kekText() })
  t.equal(wrong.code, 1, 'a wrong KEK exits 1')
  t.match(wrong.stderr, ONE_LINE, 'with one line naming the problem')
  t.equal(wrong.stdout, '', 'and nothing else')

  const newFile = path.join(dir, 'new.kek')
  await fs.writeFile(newFile, `${newKek}\n`, { mode: 0o600 })
  const refused = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], { ...base, TESSERA_KEK: kekText() })
  t.equal(refused.code, 1, 'rewrap with a wrong current KEK fails')
  t.match(refused.stderr, ONE_LINE)
  const missing = await runCli(['keys', 'rewrap', '--new-kek-file', `${newFile}.typo`], { ...base, TESSERA_KEK: oldKek })
  t.same([missing.code, missing.stderr], [1, `tessera: cannot read the new KEK: ${newFile}.typo: no such file\n`], 'a missing file is said in words')
  const rewrap = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], { ...base, TESSERA_KEK: oldKek })
  t.equal(rewrap.code, 0, rewrap.stderr)
  t.equal(rewrap.stdout, `re-encrypted 2 private key(s) under the new KEK; now give every instance the new KEK, the contents of ${newFile} (TESSERA_KEK, or the file TESSERA_KEK_FILE names) and restart it\n`)
  const { db } = await testConnection(t, databaseUrl)
  t.equal((await db.selectFrom('audit_events').select('id').where('type', '=', 'key.rewrapped').execute()).length, 2)

  const old = await startExpectingFailure({ ...base, TESSERA_KEK: oldKek })
  t.equal(old.code, 1, 'the old KEK is refused at start')
  t.match(old.stderr, ONE_LINE)

  const second = await startServer(t, { ...base, TESSERA_KEK: newKek })
  t.ok(await verifyAccess(tokens.access_token, remoteVerifier(second.url, 1000), ISSUER), 'an access token issued before the rewrap verifies against the new JWKS')
  const refreshed = await refreshOver(second.url, tokens.refresh_token)
  t.equal(refreshed.status, 200, 'a refresh token issued before the rewrap still works')
  t.ok(await verifyAccess(String(refreshed.body.access_token), remoteVerifier(second.url, 1000), ISSUER), 'and the new access token verifies')

  // As compose runs it: the new KEK piped in, so there is no file to name.
  const third = path.join(dir, 'third.kek')
  await fs.writeFile(third, `${kekText()}\n`, { mode: 0o600 })
  const piped = await runProcess('/bin/sh', ['-c', 'exec "$NODE" "$CLI" keys rewrap --new-kek-file /dev/stdin < "$KEK_FILE"'],
    { env: { PATH: process.env.PATH ?? '', ...base, TESSERA_KEK: newKek, NODE: process.execPath, CLI: CLI_ENTRY, KEK_FILE: third } })
  t.equal(piped.code, 0, piped.stderr)
  t.equal(piped.stdout, 're-encrypted 2 private key(s) under the new KEK; now give every instance the new KEK (TESSERA_KEK, or the file TESSERA_KEK_FILE names) and restart it\n')
})

t.test('after a rewrap, a worker forked to replace another signs with the keys its primary holds, until the instance restarts', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const base = { DATABASE_URL: await createTestDatabase(t), TESSERA_ISSUER: ISSUER, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir, TESSERA_WORKERS: '2', TESSERA_RATE_LIMIT: '1000000' }
  const oldKek = kekText()
  const server = await startServer(t, { ...base, TESSERA_KEK: oldKek })
  await signUpOver(server.url, 'rhea', 'correct horse battery')
  const before = await loginOver(server.url, 'rhea', 'correct horse battery')
  const newFile = path.join(dir, 'new.kek')
  await fs.writeFile(newFile, `${kekText()}\n`, { mode: 0o600 })
  const rewrap = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], { ...base, TESSERA_KEK: oldKek })
  t.equal(rewrap.code, 0, rewrap.stderr)

  // Both workers recycled in turn, as operators.md's "a worker is replaced" allows at any time: from here on every request meets a worker forked after the rewrap.
  const lines = (): Array<{ msg: string, hashing_pid?: number }> => server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string })
  const hashingPid = lines().find((l) => l.msg === 'hashing process started')?.hashing_pid
  const workers = (): number[] => instancePids(server.process.pid ?? 0).slice(1).filter((pid) => pid !== hashingPid)
  const listening = (): number => lines().filter((l) => l.msg === `Server listening at ${server.url}`).length
  const forkedBefore = workers()
  t.equal(forkedBefore.length, 2)
  for (const [i, pid] of forkedBefore.entries()) {
    process.kill(pid, 'SIGTERM')
    t.ok(await within(20_000, async () => listening() === 3 + i, 50) !== undefined, `worker ${i + 1} is replaced`)
  }
  t.notOk(workers().some((pid) => forkedBefore.includes(pid)), 'by two new ones')
  const login = await within(20_000, async () => {
    try { return (await loginOver(server.url, 'rhea', 'correct horse battery')).access_token !== undefined } catch { return false }
  }, 200)
  t.ok(login !== undefined, 'the new workers serve logins: they sign with the keys the primary opened before the rewrap')
  const refreshed = await refreshOver(server.url, before.refresh_token)
  t.equal(refreshed.status, 200, 'and refreshes of tokens issued before it')
  t.ok(await verifyAccess(String(refreshed.body.access_token), remoteVerifier(server.url, 1000), ISSUER), 'whose access tokens verify against the JWKS')
  t.notOk(lines().some((l) => l.msg === 'an HTTP worker exited before it listened; starting another after a pause'), 'no worker failed its start')
  t.notMatch(server.output(), /cannot decrypt/, 'nor said it could not open a key')
})

t.test('without TESSERA_KEK, rewrap replaces the local KEK file', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const base = { DATABASE_URL: databaseUrl, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir }
  const made = await runCli(['keys', 'rotate', '--now', '--json'], base)
  t.equal(made.code, 0, made.stderr)
  const kid = (JSON.parse(made.stdout) as { promoted: string }).promoted
  const before = await fs.readFile(path.join(dir, 'kek'), 'utf8')
  const newFile = path.join(dir, 'new.kek')
  await fs.writeFile(newFile, `${kekText()}\n`)
  const rewrap = await runCli(['keys', 'rewrap', '--new-kek-file', newFile, '--json'], base)
  t.equal(rewrap.code, 0, rewrap.stderr)
  t.same(JSON.parse(rewrap.stdout), { rewrapped: [kid], local_kek_file: path.join(dir, 'kek') })
  t.equal(await fs.readFile(path.join(dir, 'kek'), 'utf8'), await fs.readFile(newFile, 'utf8'))
  t.not(before, await fs.readFile(newFile, 'utf8'))
  t.equal((await fs.stat(path.join(dir, 'kek'))).mode & 0o777, 0o600)
})

t.test('a rewrap killed between its commit and its rename (local KEK): the next command or start finishes the rename and says so; a KEK given in the environment touches no file', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const base = { DATABASE_URL: databaseUrl, TESSERA_ISSUER: ISSUER, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir }
  const made = await runCli(['keys', 'rotate', '--now'], base)
  t.equal(made.code, 0, made.stderr)
  const file = path.join(dir, 'kek')
  const { db } = await testConnection(t, databaseUrl)
  // Left by a rewrap killed before its commit: it holds a KEK that opens nothing, and stays where it is.
  const stale = path.join(dir, 'kek.1')
  await fs.writeFile(stale, `${kekText()}\n`, { mode: 0o600 })
  /** The state a rewrap killed after its commit leaves: its new KEK staged beside kek, the keys sealed under it, kek the old one. */
  const interrupted = async (pid: number): Promise<{ staged: string, text: string }> => {
    const text = `${kekText()}\n`
    const staged = path.join(dir, `kek.${pid}`)
    await fs.writeFile(staged, text, { mode: 0o600, flag: 'wx' })
    await rewrapKeys(db, await readKekFile(file), await readKekFile(staged), { actor: 'operator', userAgent: 'tessera-cli' })
    return { staged, text }
  }
  const finished = (staged: string): string => `${file} did not open the signing keys and ${staged} did: a \`tessera keys rewrap\` stopped after its commit, before renaming the one over the other; renamed it now`

  const first = await interrupted(4_000_001)
  const oldText = await fs.readFile(file, 'utf8')
  const given = await startExpectingFailure({ ...base, TESSERA_KEK_FILE: file })
  t.same([given.code, given.stdout], [1, ''], 'with TESSERA_KEK_FILE naming the old file, the start is refused')
  t.match(given.stderr, ONE_LINE)
  t.equal(await fs.readFile(file, 'utf8'), oldText, 'and the file it names is left as it was')
  t.equal(await fs.readFile(first.staged, 'utf8'), first.text, 'and so is the staged one')

  const newFile = path.join(dir, 'new.kek')
  await fs.writeFile(newFile, `${kekText()}\n`, { mode: 0o600 })
  const again = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], base)
  t.equal(again.code, 0, again.stderr)
  t.equal(again.stderr, `tessera: ${finished(first.staged)}\n`, 'the command says it finished the interrupted rename')
  t.equal(again.stdout, `re-encrypted 1 private key(s) under the new KEK; ${file} now holds it; restart the server\n`, 'then does its own rewrap from there')
  t.equal(await fs.readFile(file, 'utf8'), await fs.readFile(newFile, 'utf8'))
  await t.rejects(fs.stat(first.staged), { code: 'ENOENT' })

  const second = await interrupted(4_000_002)
  const server = await startServer(t, base)
  const warned = server.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number, msg: string, file?: string, staged?: string })
    .filter((line) => line.msg === finished(second.staged))
  t.same(warned.map((line) => [line.level, line.file, line.staged]), [[40, file, second.staged]], 'a start finishes it too, with one warning naming both files')
  t.equal(await fs.readFile(file, 'utf8'), second.text, 'kek now holds the KEK the keys are sealed under')
  await t.rejects(fs.stat(second.staged), { code: 'ENOENT' })
  t.equal((await fs.stat(file)).mode & 0o777, 0o600)
  await signUpOver(server.url, 'sana', 'correct horse battery')
  t.ok(await verifyAccess((await loginOver(server.url, 'sana', 'correct horse battery')).access_token, remoteVerifier(server.url, 1000), ISSUER), 'and it signs with the keys it opened')
  t.ok((await fs.stat(stale)).isFile(), 'a staged file that opens nothing is left alone')
})

t.test('a data directory that cannot take the new KEK refuses the rewrap before any key changes', { skip: process.getuid?.() === 0 ? false : 'needs root, for chattr +i (no other way to make a directory unwritable to its owner)' }, async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => {
    spawnSync('chattr', ['-i', dir])
    await fs.rm(dir, { recursive: true, force: true })
  })
  const base = { DATABASE_URL: databaseUrl, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir }
  t.equal((await runCli(['keys', 'rotate', '--now'], base)).code, 0)
  const newFile = path.join(os.tmpdir(), `tessera-new-kek-${process.pid}`)
  await fs.writeFile(newFile, `${kekText()}\n`)
  t.teardown(async () => { await fs.rm(newFile, { force: true }) })
  const frozen = spawnSync('chattr', ['+i', dir], { encoding: 'utf8' })
  t.equal(frozen.status, 0, `chattr +i: ${frozen.stderr}`)
  const refused = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], base)
  t.equal(refused.code, 1)
  t.match(refused.stderr, new RegExp(`^tessera: cannot write the new KEK beside ${path.join(dir, 'kek')}: .*; nothing was re-encrypted\\n$`))
  spawnSync('chattr', ['-i', dir])
  const rotated = await runCli(['keys', 'rotate', '--now'], base)
  t.equal(rotated.code, 0, `the keys still open with the local KEK: ${rotated.stderr}`)
})

t.test('an instance that cannot open the current key (made under the new KEK before its restart) says so in its metrics', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tessera-kek-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const base = { DATABASE_URL: await createTestDatabase(t), TESSERA_ISSUER: ISSUER, TESSERA_KEY_ROTATION: 'off', TESSERA_DATA_DIR: dir, TESSERA_RATE_LIMIT: '1000000' }
  const oldKek = kekText()
  const newKek = kekText()
  const server = await startServer(t, { ...base, TESSERA_KEK: oldKek })
  await signUpOver(server.url, 'tove', 'correct horse battery')
  const samples = async (): Promise<Map<string, string>> => new Map((await (await fetch(`${server.url}/metrics`)).text()).split('\n')
    .filter((line) => line.startsWith('tessera_signing_key')).map((line): [string, string] => [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)]))
  t.equal((await samples()).get('tessera_signing_key_loaded'), '1', 'while it signs, the key is loaded')

  const newFile = path.join(dir, 'new.kek')
  await fs.writeFile(newFile, `${newKek}\n`, { mode: 0o600 })
  const rewrap = await runCli(['keys', 'rewrap', '--new-kek-file', newFile], { ...base, TESSERA_KEK: oldKek })
  t.equal(rewrap.code, 0, rewrap.stderr)
  // The runbook's mistake: a key made before every instance runs with the new KEK.
  const rotated = await runCli(['keys', 'rotate', '--now'], { ...base, TESSERA_KEK: newKek })
  t.equal(rotated.code, 0, rotated.stderr)
  const refused = await within(20_000, async () => (await fetch(`${server.url}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=password&username=tove&password=correct+horse+battery'
  })).status === 503, 100)
  t.ok(refused !== undefined, 'the instance on the old KEK answers logins 503')
  const after = await samples()
  t.equal(after.get('tessera_signing_key_loaded'), '0', 'and its metrics say it has no signing key loaded')
  t.equal(after.get('tessera_signing_key_age_seconds'), '0', 'nor a signing key whose age could look healthy')
  t.equal(after.get('tessera_signing_keys{state="current"}'), '1', 'the current key is still held, to verify tokens')
})
