import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { connect } from '../../src/db/connect.js'
import { ensureRoles, type DatabaseRoles } from '../../src/db/roles.js'
import { asAdmin, createTestDatabase, loggingDb, urlAs } from '../helpers/db.js'
import { loginOver, signUpOver } from '../helpers/http.js'
import { runCli, startServer } from '../helpers/server.js'

const PERMISSION_DENIED = '42501'

t.test('owner, runtime and notes roles: each can do its job and nothing more', async (t) => {
  const suffix = randomBytes(4).toString('hex')
  const roles: DatabaseRoles = {
    owner: { name: `t_owner_${suffix}`, password: randomBytes(12).toString('base64url') },
    runtime: { name: `t_app_${suffix}`, password: `it's-${randomBytes(12).toString('base64url')}` },
    // NFKC changes it: the verifier must be made from what a client derives its proof from (SASLprep).
    notes: { name: `t_notes_${suffix}`, password: `ﬁne\u00a0pässwörd-${randomBytes(12).toString('base64url')}` }
  }
  // Roles are cluster-wide: dropped after the database they own (teardowns run last-in, first-out).
  t.teardown(async () => { for (const role of Object.values(roles)) await asAdmin(`DROP ROLE IF EXISTS "${role.name}"`) })
  const databaseUrl = await createTestDatabase(t)
  const admin = connect(databaseUrl)
  t.teardown(admin.close)
  // Every statement as sent: a password in one would be in the server's log the moment it failed.
  const statements: string[] = []
  const logged = loggingDb(t, databaseUrl, (query) => { statements.push(`${query.sql} ${JSON.stringify(query.parameters)}`) })
  await ensureRoles(logged, roles)
  t.notOk(statements.some((text) => Object.values(roles).some((role) => text.includes(role.password))), 'no statement carries a password')
  t.equal(statements.filter((text) => /PASSWORD 'SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+'/.test(text)).length, 3, 'each role gets a SCRAM verifier')
  await ensureRoles(admin.db, roles) // again: passwords reset, grants re-applied, nothing fails
  await t.rejects(ensureRoles(admin.db, { ...roles, notes: { name: 'x"; DROP TABLE users; --', password: 'p' } }), { message: /^role name/ }, 'a role name is an identifier, never SQL')

  const notes = new pg.Client({ connectionString: urlAs(databaseUrl, roles.notes) })
  await notes.connect()
  t.teardown(async () => { await notes.end() })
  await t.rejects(notes.query('SELECT password_hash FROM public.users'), { code: PERMISSION_DENIED }, 'notes cannot read users')
  await t.rejects(notes.query("INSERT INTO public.signing_keys (kid, state, bits, public_jwk) VALUES ('evil', 'previous', 2048, '{}')"), { code: PERMISSION_DENIED }, 'notes cannot insert a signing key')
  await notes.query('CREATE TABLE notes.probe (id int)')
  await notes.query('INSERT INTO notes.probe VALUES (1)')
  t.pass('notes owns its own schema')

  // Tessera at runtime: serves, signs up, logs in (keys, sessions, audit) as the runtime role.
  const server = await startServer(t, { DATABASE_URL: urlAs(databaseUrl, roles.runtime), TESSERA_KEK: randomBytes(32).toString('base64url') })
  await signUpOver(server.url, 'roles', 'correct horse battery')
  t.ok((await loginOver(server.url, 'roles', 'correct horse battery')).access_token, 'the runtime role does its job')
  const runtime = new pg.Client({ connectionString: urlAs(databaseUrl, roles.runtime) })
  await runtime.connect()
  t.teardown(async () => { await runtime.end() })
  await t.rejects(runtime.query('CREATE TABLE public.intruder (id int)'), { code: PERMISSION_DENIED }, 'the runtime role has no DDL')
  await t.rejects(runtime.query('DROP TABLE public.audit_events'), { code: PERMISSION_DENIED })
  await t.rejects(runtime.query('SELECT * FROM notes.probe'), { code: PERMISSION_DENIED }, 'nor anything of notes')
  // The operator commands run as the runtime role too (operators.md), a user import included.
  const csv = join(await mkdtemp(join(tmpdir(), 'tessera-roles-')), 'users.csv')
  t.teardown(async () => { await rm(dirname(csv), { recursive: true, force: true }) })
  await writeFile(csv, 'username,password_hash,disabled\nimported,!unusable,false\n')
  for (const args of [['--dry-run'], []]) {
    const imported = await runCli(['users', 'import', csv, ...args], { DATABASE_URL: urlAs(databaseUrl, roles.runtime) })
    t.equal(imported.code, 0, `users import ${args.join(' ')} as the runtime role: ${imported.stderr}`)
  }
  await t.rejects(notes.query('CREATE TEMPORARY TABLE scratch (id int)'), { code: PERMISSION_DENIED }, 'notes has no temporary tables in Tessera\'s database')

  const migrate = await runCli(['migrate', 'up'], { DATABASE_URL: urlAs(databaseUrl, roles.owner) })
  t.equal(migrate.code, 0, `migrations run as the owner: ${migrate.stderr}`)
  // The database was migrated by a superuser before the roles existed (createTestDatabase): its functions changed hands with its tables.
  const { rows: functions } = await admin.pool.query<{ name: string, owner: string }>(
    "SELECT p.proname AS name, pg_get_userbyid(p.proowner) AS owner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1")
  t.ok(functions.some((f) => f.name === 'tessera_refresh_grant'), 'the migrations made functions')
  t.same(functions.filter((f) => f.owner !== roles.owner.name), [], 'every one of them is the owner\'s')
  await server.stop()
  const asRuntime = await runCli(['migrate', 'down', '--yes'], { DATABASE_URL: urlAs(databaseUrl, roles.runtime) })
  t.equal(asRuntime.code, 1, 'migrations as the runtime role fail')
  // Postgres's own words name what the newest migration's down touches first (a table it alters, an index it drops, a function in public it replaces).
  t.match(asRuntime.stderr, /^tessera: (permission denied for schema public|must be owner of (table|index|function) \w+): the role in DATABASE_URL may not do this; `tessera migrate` runs as the owner role/, 'and say which role they need')
  for (const command of [['migrate', 'down', '--yes'], ['migrate', 'up']]) {
    const run = await runCli(command, { DATABASE_URL: urlAs(databaseUrl, roles.owner) })
    t.equal(run.code, 0, `${command.join(' ')} as the owner: ${run.stderr}`)
  }
  const owner = new pg.Client({ connectionString: urlAs(databaseUrl, roles.owner) })
  await owner.connect()
  t.teardown(async () => { await owner.end() })
  await owner.query('CREATE TABLE public.later (id int)')
  await runtime.query('INSERT INTO public.later VALUES (1)')
  t.pass('a table the owner creates later is granted to the runtime role by default')
})
