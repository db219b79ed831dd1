/**
 * Issue 15, users: Django makes the hashes and the dumpdata file (its own
 * make_password and manage.py, Debian's python3-django), Tessera imports them
 * with `tessera users import` and the users log in with their old passwords.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { buildTestApp, login, signUp } from '../helpers/app.js'
import { REPO_ROOT } from '../helpers/gateway.js'
import { createTestDatabase, testConnection } from '../helpers/db.js'
import { djangoOracle, PYTHON, scratchDir } from '../helpers/django.js'
import { runCli } from '../helpers/server.js'
import { MAX_PBKDF2_ITERATIONS, verifyDjangoHash } from '../../src/passwords/django.js'

// Under .ci/run with other work on the 2-core machine it came within 40 s of tap's default 180 (session 35), and tap's timeout runs no teardowns.
t.setTimeout(300_000)

const run = promisify(execFile)
// Not NFKC-stable and with a space: Django hashes the password as typed.
const PASSWORD = 'ﬁne Pässwörd 1'
const HASHERS = ['pbkdf2_sha256', 'pbkdf2_sha1', 'argon2', 'argon2i', 'bcrypt_sha256', 'bcrypt', 'scrypt', 'bcrypt_2y', 'bcrypt_sha256_2y'] as const
/** Hashes made outside make_password: the import test writes them into Django's table as they are. */
const ENCODED = ['argon2i', 'scrypt', 'bcrypt_2y', 'bcrypt_sha256_2y']

t.test('each of Django\'s hashers, made by make_password, verifies; a wrong password does not', async (t) => {
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<typeof HASHERS[number], string>
  for (const name of HASHERS) {
    t.ok(await verifyDjangoHash(hashes[name], PASSWORD), `${name} verifies`)
    t.notOk(await verifyDjangoHash(hashes[name], `${PASSWORD}x`), `${name} refuses a wrong password`)
  }
  t.notOk(await verifyDjangoHash(hashes.pbkdf2_sha256, PASSWORD.normalize('NFKC')), 'the NFKC form is not what Django hashed')
  const absurd = hashes.pbkdf2_sha256.replace('$260000$', `$${MAX_PBKDF2_ITERATIONS + 1}$`)
  t.notOk(await verifyDjangoHash(absurd, PASSWORD), 'over the iteration cap: refused without hashing')
})

t.test('manage.py dumpdata auth.user imports; users log in with their old passwords; the hash becomes argon2id', async (t) => {
  const dir = await scratchDir(t)
  const users = [
    ...HASHERS.filter((h) => !ENCODED.includes(h)).map((hasher) => ({ username: `u_${hasher}`, password: PASSWORD, hasher })),
    { username: 'Mixed.Case', password: PASSWORD, hasher: 'pbkdf2_sha256' },
    { username: 'gone', password: PASSWORD, hasher: 'pbkdf2_sha256', is_active: false },
    { username: 'nopass', hasher: 'unusable' },
    { username: 'has space', password: PASSWORD, hasher: 'pbkdf2_sha256' }
  ]
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<string, string>
  users.push(...ENCODED.map((hasher) => ({ username: `u_${hasher}`, hasher, encoded: hashes[hasher] }) as never))
  await writeFile(join(dir, 'users.json'), JSON.stringify(users))
  await djangoOracle('project', dir, join(dir, 'users.json'))
  const { stdout: dump } = await run(PYTHON, ['manage.py', 'dumpdata', 'auth.user'], { cwd: dir, env: { ...process.env, PYTHONPATH: dir }, maxBuffer: 64 * 1024 * 1024 })
  const file = join(dir, 'dump.json')
  await writeFile(file, dump)

  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const dry = await runCli(['users', 'import', file, '--dry-run', '--json'], env)
  t.equal(dry.code, 0, dry.stderr)
  t.match(JSON.parse(dry.stdout), { dry_run: true, read: users.length, created: users.length - 1, problem_count: 1 })
  const connection = await testConnection(t, url)
  t.equal((await connection.db.selectFrom('users').select('id').execute()).length, 0, 'a dry run writes nothing')

  const first = await runCli(['users', 'import', file, '--json'], env)
  t.equal(first.code, 0, first.stderr)
  const report = JSON.parse(first.stdout)
  t.match(report, { read: users.length, created: users.length - 1, existing: 0, disabled: 1, unusable: 1, problem_count: 1 })
  t.equal(report.problems.length, 1)
  t.match(report.problems, [{ position: users.findIndex((u) => u.username === 'has space') + 1, username: 'has space', reason: /^username: / }], 'the bad row, by its record number')

  const ctx = await buildTestApp(t, {}, { connection, productionArgon2: true })
  const hashOf = async (username: string): Promise<string> =>
    (await connection.db.selectFrom('users').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow()).password_hash
  for (const name of HASHERS) {
    const username = `u_${name}`
    t.notOk((await hashOf(username)).startsWith('$argon2id$v=19$m=19456'), `${username} starts with Django's hash`)
    const wrong = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username, password: 'not it at all' } })
    t.equal(wrong.statusCode, 400, `${username}: a wrong password is invalid_grant`)
    await login(ctx.app, username, PASSWORD)
    t.match(await hashOf(username), /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, `${username}: rehashed to argon2id at the first login`)
    await login(ctx.app, username, PASSWORD)
  }
  await login(ctx.app, 'mixed.case', PASSWORD)
  for (const refused of ['gone', 'nopass']) {
    const res = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: refused, password: PASSWORD } })
    t.equal(res.statusCode, 400, `${refused} cannot log in`)
  }

  const again = await runCli(['users', 'import', file, '--json'], env)
  t.match(JSON.parse(again.stdout), { created: 0, existing: users.length - 1, problem_count: 1 }, 'a second run changes nothing')
  const audit = await connection.db.selectFrom('audit_events').select('detail').where('type', '=', 'users.imported').orderBy('id').execute()
  t.equal(audit.length, 2, 'one row per run')
  t.match(audit.map((a) => a.detail), [{ created: users.length - 1, complete: true }, { created: 0, existing: users.length - 1 }])
  t.notMatch(JSON.stringify(audit), /pbkdf2|argon2|bcrypt/, 'counts, never hashes')
})

t.test('Django\'s Dave and dave: dave keeps the name whatever the order, so no one logs in as the other; Zed comes in as zed, said', async (t) => {
  const dir = await scratchDir(t)
  // Saved in this order, so dumpdata (by pk) lists Dave before dave: the first record of a name used to win.
  const users = [
    { username: 'Dave', password: 'upper-case dave pw', hasher: 'pbkdf2_sha256' },
    { username: 'dave', password: 'lower-case dave pw', hasher: 'pbkdf2_sha256' },
    { username: 'Zed', password: PASSWORD, hasher: 'pbkdf2_sha256' }
  ]
  await writeFile(join(dir, 'users.json'), JSON.stringify(users))
  await djangoOracle('project', dir, join(dir, 'users.json'))
  const { stdout: dump } = await run(PYTHON, ['manage.py', 'dumpdata', 'auth.user'], { cwd: dir, env: { ...process.env, PYTHONPATH: dir } })
  const file = join(dir, 'dump.json')
  await writeFile(file, dump)
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }

  const imported = await runCli(['users', 'import', file, '--json'], env)
  t.equal(imported.code, 0, imported.stderr)
  const importedReport = JSON.parse(imported.stdout)
  t.same([importedReport.renamed_users.length, importedReport.problems.length], [1, 1], 'one renamed, one problem: t.match below would take more')
  t.match(importedReport, {
    read: 3,
    created: 2,
    renamed: 1,
    renamed_users: [{ position: 3, django: 'Zed', tessera: 'zed' }],
    duplicates: 1,
    problems: [{ position: 1, username: 'Dave', reason: 'username: same as record 2 after NFKC and lower-casing, which is kept: it is spelled "dave"' }]
  })
  const ctx = await buildTestApp(t, {}, { connection: await testConnection(t, url) })
  await login(ctx.app, 'dave', 'lower-case dave pw')
  const impostor = await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'dave', password: 'upper-case dave pw' } })
  t.equal(impostor.statusCode, 400, 'Dave\'s password does not open dave, whom a DRF service finds by that exact name')
  await login(ctx.app, 'zed', PASSWORD)
  const human = await runCli(['users', 'import', file, '--dry-run'], env)
  t.match(human.stdout, /skipped 2 existing; 1 problem\(s\) \(dry run: nothing written\)\n {2}record 1 \(Dave\): username: same as record 2/)

  // A name someone signed up in Tessera before its Django user was imported is reported, not skipped as imported.
  await signUp(ctx.app, 'newguy', 'an impostor\'s password')
  const later = join(dir, 'later.csv')
  await writeFile(later, `username,password_hash,disabled\nnewguy,${JSON.parse(dump)[0].fields.password as string},false\nzed,${JSON.parse(dump)[2].fields.password as string},false\n`)
  const reimport = JSON.parse((await runCli(['users', 'import', later, '--json'], env)).stdout)
  t.match(reimport, { created: 0, existing: 0, problem_count: 2 })
  t.equal(reimport.problems.length, 2)
  t.match([...reimport.problems].sort((a: { position: number }, b: { position: number }) => a.position - b.position), [
    { position: 2, username: 'newguy', reason: /^username: held in Tessera by a user no import made \(signed up or created there, or imported before Tessera recorded imports\); a DRF service would give them this Django user's data/ },
    { position: 3, username: 'zed', reason: /^username: "zed" was imported before from "Zed"/ }
  ])
  const again = JSON.parse((await runCli(['users', 'import', file, '--json'], env)).stdout)
  t.match(again, { created: 0, existing: 2, problem_count: 1 }, 'the same file again: dave and Zed skipped as imported from those very records, Dave still a duplicate')

  // The exact spelling refused for a problem of its own still keeps its name from Dave.
  const refusedExact = join(dir, 'refused.csv')
  await writeFile(refusedExact, `username,password_hash,disabled\nKim,${JSON.parse(dump)[0].fields.password as string},false\nkim,md5$salt$0123456789abcdef0123456789abcdef,false\n`)
  const kept = JSON.parse((await runCli(['users', 'import', refusedExact, '--json'], env)).stdout)
  t.match(kept, { created: 0, problem_count: 2 })
  t.equal(kept.problems.length, 2)
  t.match([...kept.problems].sort((a: { position: number }, b: { position: number }) => a.position - b.position), [
    { position: 2, username: 'Kim', reason: 'username: same as line 3 after NFKC and lower-casing, which is not imported (see its problem) and keeps its name: under "kim" this one would be that user to a DRF service' },
    { position: 3, username: 'kim', reason: /^password: unknown hash algorithm "md5"/ }
  ], 'Kim is not imported as kim')

  // Across imports: dave (exact) was imported; a later file's Dave is another Django user's spelling, and the other way round.
  const otherSpelling = join(dir, 'other.csv')
  await writeFile(otherSpelling, `username,password_hash,disabled\nDAVE,${JSON.parse(dump)[0].fields.password as string},false\n`)
  const otherReport = JSON.parse((await runCli(['users', 'import', otherSpelling, '--json'], env)).stdout)
  t.equal(otherReport.problems.length, 1)
  t.match(otherReport, {
    created: 0, existing: 0, problems: [{ position: 2, username: 'DAVE', reason: /^username: "dave" was imported before from "dave", another Django user/ }]
  })
  const zedExact = join(dir, 'zed.csv')
  await writeFile(zedExact, `username,password_hash,disabled\nzed,${JSON.parse(dump)[2].fields.password as string},false\n`)
  const zedReport = JSON.parse((await runCli(['users', 'import', zedExact, '--json'], env)).stdout)
  t.equal(zedReport.problems.length, 1)
  t.match(zedReport, {
    created: 0, existing: 0, problems: [{ position: 2, username: 'zed', reason: /^username: "zed" was imported before from "Zed", another Django user/ }]
  }, 'a Django user spelled zed, after Zed was imported as zed: reported, not skipped')

  const fresh = await createTestDatabase(t)
  const said = await runCli(['users', 'import', file], { ...env, DATABASE_URL: fresh })
  t.match(said.stdout, /\n {2}1 of them under their name after NFKC and lower-casing: a DRF service finds a token's user by exact name[^\n]*:\n {4}record 3: Zed as zed\n/, 'each renamed user is named, as Django spells it and as Tessera keeps it')
})

t.test('a dump that is not UTF-8 text is named for what it is: UTF-16 (PowerShell\'s >), gzip (dumpdata -o users.json.gz)', async (t) => {
  const dir = await scratchDir(t)
  await writeFile(join(dir, 'users.json'), JSON.stringify([{ username: 'zoe', password: PASSWORD, hasher: 'pbkdf2_sha256' }]))
  await djangoOracle('project', dir, join(dir, 'users.json'))
  const django = { cwd: dir, env: { ...process.env, PYTHONPATH: dir } }
  const { stdout: dump } = await run(PYTHON, ['manage.py', 'dumpdata', 'auth.user'], django)
  await run(PYTHON, ['manage.py', 'dumpdata', 'auth.user', '-o', join(dir, 'dump.json.gz')], django)
  // What Windows PowerShell 5.1's `>` makes of the dump: UTF-16LE after a byte-order mark.
  await writeFile(join(dir, 'ps.json'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(dump, 'utf16le')]))
  await writeFile(join(dir, 'ps.csv'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('username,password_hash,disabled\n', 'utf16le')]))
  await writeFile(join(dir, 'big-endian.json'), Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(dump, 'utf16le').swap16()]))
  await writeFile(join(dir, 'bom.json'), `\ufeff${dump}`)

  const env = { DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: randomBytes(32).toString('base64url') }
  // One after another: imports at once on a database wait for each other, and say so on stderr.
  const answers = []
  for (const name of ['ps.json', 'big-endian.json', 'ps.csv', 'dump.json.gz']) answers.push(await runCli(['users', 'import', join(dir, name)], env))
  const utf16 = 'tessera: the file is UTF-16 (what Windows PowerShell\'s > writes), not UTF-8: '
  t.same(answers.map((a) => [a.code, a.stdout, a.stderr]), [
    [1, '', `${utf16}dump it again with python -X utf8 manage.py dumpdata auth.user -o users.json\n`],
    [1, '', `${utf16}dump it again with python -X utf8 manage.py dumpdata auth.user -o users.json\n`],
    [1, '', `${utf16}save it as UTF-8\n`],
    [1, '', 'tessera: the file is gzip-compressed (what dumpdata -o users.json.gz writes): gunzip it first\n']
  ])
  const withBom = await runCli(['users', 'import', join(dir, 'bom.json'), '--json'], env)
  t.match(JSON.parse(withBom.stdout), { read: 1, created: 1, problem_count: 0 }, 'UTF-8 with a byte-order mark is UTF-8')
})

t.test('bad input: each reported with its position and reason, nothing half-imported', async (t) => {
  const dir = await scratchDir(t)
  const url = await createTestDatabase(t)
  const env = { DATABASE_URL: url, TESSERA_KEK: randomBytes(32).toString('base64url') }
  const connection = await testConnection(t, url)
  const hashes = await djangoOracle('hashes', PASSWORD) as Record<string, string>
  const record = (username: string, password: string, isActive = true): object => ({ model: 'auth.user', pk: 1, fields: { username, password, is_active: isActive } })

  const notJson = join(dir, 'not.json')
  await writeFile(notJson, randomBytes(64))
  const garbage = await runCli(['users', 'import', notJson], env)
  t.equal(garbage.code, 1)
  t.match(garbage.stderr, /^tessera: the file is not a JSON array of records \(.*\); is this the output of manage\.py dumpdata auth\.user\?\n$/, 'nothing read: not called truncated')
  t.equal(garbage.stdout, '', 'and no summary of nothing ("read 0 record(s)") before it')
  const directory = await runCli(['users', 'import', dir], env)
  t.same([directory.code, directory.stderr], [1, `tessera: cannot read ${dir}: it is a directory\n`])
  for (const [name, error] of [['empty.json', /^tessera: the file is not a JSON array of records /], ['empty.csv', /^tessera: the file is empty; expected the header username,password_hash,disabled\n$/]] as const) {
    await writeFile(join(dir, name), '')
    const empty = await runCli(['users', 'import', join(dir, name)], env)
    t.same([empty.code, empty.stdout], [1, ''], `${name}: fails, and counts nothing`)
    t.match(empty.stderr, error)
  }

  const rows = Array.from({ length: 5 }, (_, i) => record(`whole${i}`, hashes.pbkdf2_sha256 ?? ''))
  const text = JSON.stringify(rows)
  const truncated = join(dir, 'truncated.json')
  await writeFile(truncated, text.slice(0, Math.floor(text.length * 0.7)))
  const cut = await runCli(['users', 'import', truncated, '--json'], env)
  t.equal(cut.code, 1)
  t.match(JSON.parse(cut.stdout), { created: 0, error: /truncated/ }, 'the batch being read when the file ended is not written')
  t.equal((await connection.db.selectFrom('users').select('id').execute()).length, 0)

  const mixed = join(dir, 'mixed.json')
  await writeFile(mixed, JSON.stringify([
    record('fine', hashes.pbkdf2_sha256 ?? ''),
    record('md5user', 'md5$salt$0123456789abcdef0123456789abcdef'),
    record('hostile', (hashes.pbkdf2_sha256 ?? '').replace('$260000$', '$999999999$')),
    record('Fine', hashes.bcrypt ?? ''),
    record('x', hashes.bcrypt ?? ''),
    record('brokenhash', 'pbkdf2_sha256$260000$salt$not-base64!'),
    { model: 'auth.group', pk: 1, fields: { name: 'staff', permissions: [] } }
  ]))
  const result = await runCli(['users', 'import', mixed, '--json'], env)
  t.equal(result.code, 0, result.stderr)
  const report = JSON.parse(result.stdout)
  t.match(report, { read: 7, created: 1, duplicates: 1, problem_count: 6 })
  const byPosition = [...report.problems].sort((a: { position: number }, b: { position: number }) => a.position - b.position)
  t.match(byPosition, [
    { position: 2, reason: 'password: unknown hash algorithm "md5"' },
    { position: 3, reason: /above the cap/ },
    { position: 4, username: 'Fine', reason: 'username: same as record 1 after NFKC and lower-casing' },
    { position: 5, reason: /^username: / },
    { position: 6, reason: /not base64/ },
    { position: 7, reason: '"auth.group" has no username field: dump auth.user, or a user model with username, password and is_active' }
  ])
  t.same(report.problems.map((p: { position: number }) => p.position).sort(), [2, 3, 4, 5, 6, 7])

  const human = await runCli(['users', 'import', mixed, '--dry-run'], env)
  t.match(human.stdout, /^\S+mixed\.json: read 7 record\(s\); would create 0 user\(s\) \(0 disabled, 0 with no usable password\); skipped 1 existing; 6 problem\(s\) \(dry run: nothing written\)\n {2}record 2 \(md5user\): password: unknown hash algorithm "md5"\n/)

  const csv = join(dir, 'users.csv')
  await writeFile(csv, `username,password_hash,disabled\ncsvuser,${hashes.scrypt ?? ''},false\ncsvoff,"${hashes.argon2 ?? ''}",true\ncsvbad,${hashes.bcrypt ?? ''},perhaps\ncsvcommas,${hashes.argon2 ?? ''},false\n`)
  const fromCsv = await runCli(['users', 'import', csv, '--json'], env)
  const csvReport = JSON.parse(fromCsv.stdout)
  t.equal(csvReport.problems.length, 2)
  t.match(csvReport, { read: 4, created: 2, disabled: 1, problems: [{ position: 4, reason: /^disabled: / }, { position: 5, reason: /^expected 3 columns .* must be quoted$/ }] })
  const noHeader = join(dir, 'noheader.csv')
  await writeFile(noHeader, `csvuser,${hashes.scrypt ?? ''},false\n`)
  const refused = await runCli(['users', 'import', noHeader], env)
  t.equal(refused.code, 1)
  t.match(refused.stderr, /^tessera: line 1 is not the header username,password_hash,disabled/)
  // Each run the file stopped before it created anyone changed nothing, and says so on stderr only: the audit trail has the two that imported.
  const imports = (await connection.db.selectFrom('audit_events').select('detail').where('type', '=', 'users.imported').orderBy('id').execute()).map((e) => e.detail)
  t.equal(imports.length, 2, 'not the unreadable, empty, truncated or headless files\' runs')
  t.match(imports, [{ format: 'django', complete: true, read: 7, created: 1 }, { format: 'csv', complete: true, read: 4, created: 2 }])
  // As README gives every command: npm runs the script from the project root and keeps where it was typed in INIT_CWD.
  const typed = await run('npm', ['--prefix', REPO_ROOT, 'run', '-s', 'tessera', '--', 'users', 'import', 'users.csv', '--dry-run', '--json'], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env } })
  t.match(JSON.parse(typed.stdout), { file: 'users.csv', read: 4, dry_run: true }, '`npm run tessera` reads a relative name from the directory it was typed in')
  // A setting is not a name on the command line: DATABASE_URL's files are read from where TESSERA_DATA_DIR is resolved, the
  // project root npm runs the script in (as the server's), whatever directory it was typed in. users.csv is a file there, not a CA.
  const settingFile = await run('npm', ['--prefix', REPO_ROOT, 'run', '-s', 'tessera', '--', 'migrate', 'status'], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env, DATABASE_URL: `${env.DATABASE_URL}?sslmode=verify-full&sslrootcert=users.csv` } })
    .then(() => ({ stderr: 'exited 0' }), (err: { stderr: string }) => err)
  t.match(settingFile.stderr, `DATABASE_URL's sslrootcert "${join(REPO_ROOT, 'users.csv')}" cannot be read (ENOENT)`, 'DATABASE_URL\'s sslrootcert from the project root, and the refusal says so')
  const inherited = await runCli(['users', 'import', 'users.csv'], { ...env, INIT_CWD: dir, npm_lifecycle_event: 'test' })
  t.equal(inherited.stderr, 'tessera: cannot read users.csv: no such file\n', 'not from an INIT_CWD that another npm script passed down')
  const missing = await runCli(['users', 'import', join(dir, 'nope.json')], env)
  t.equal(missing.stderr, `tessera: cannot read ${join(dir, 'nope.json')}: no such file\n`)
  const ctx = await buildTestApp(t, {}, { connection })
  await login(ctx.app, 'csvuser', PASSWORD)
  t.equal((await ctx.app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'password', username: 'csvoff', password: PASSWORD } })).statusCode, 400, 'disabled in the CSV')
})

t.test('a CSV the parser refuses: the line and what is wrong, never the cell it stopped in (a hash, or a password exported into the wrong column)', async (t) => {
  const dir = await scratchDir(t)
  const env = { DATABASE_URL: await createTestDatabase(t), TESSERA_KEK: randomBytes(32).toString('base64url') }
  const secret = 'SecretCell7f3a'
  const cases = [
    [`x1,pbkdf2_sha256$1000$salt$${secret}"tail,false`, 'a quote inside a field that does not start with one; quote the whole field and double the quotes inside it'],
    [`x2,"pbkdf2_sha256$1000$salt$${secret}"tail,false`, 'a quoted field goes on after its closing quote; double a quote inside a quoted field'],
    [`x3,"pbkdf2_sha256$1000$salt$${secret},false`, 'a quoted field is not closed before the end of the file']
  ] as const
  for (const [row, reason] of cases) {
    const file = join(dir, 'quotes.csv')
    await writeFile(file, `username,password_hash,disabled\n${row}\n`)
    for (const json of [false, true]) {
      const refused = await runCli(['users', 'import', file, '--dry-run', ...(json ? ['--json'] : [])], env)
      t.equal(refused.code, 1)
      t.equal(refused.stderr, `tessera: the file is not valid CSV at line 2: ${reason}\n`, `${row}${json ? ' (--json)' : ''}: said`)
      t.notMatch(`${refused.stdout}${refused.stderr}`, secret, 'and the cell not repeated')
    }
  }
})
