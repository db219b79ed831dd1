/**
 * `tessera migrate up` run as a superuser on a database `tessera db roles`
 * has set up (the make stack table's "the same" command, or a superuser's
 * URL at hand): the tables it makes are the superuser's, not the owner
 * role's, so the default grants to the runtime role never apply and every
 * request that reads them fails (500, "permission denied for table") until
 * `db roles` hands them over. The command says so.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { connect } from '../../src/db/connect.js'
import { migrateDown, migrationStatus } from '../../src/db/migrate.js'
import { ensureRoles } from '../../src/db/roles.js'
import { asAdmin, createTestDatabase, scratchRoles, urlAs } from '../helpers/db.js'
import { runCli } from '../helpers/server.js'

t.test('migrate up as a superuser names the tables it made that the runtime role may not use, and what hands them over', async (t) => {
  const roles = scratchRoles(t)
  const superuserUrl = await createTestDatabase(t)
  const superuser = connect(superuserUrl)
  t.teardown(superuser.close)
  await ensureRoles(superuser.db, roles)
  // Back to before 0004, which makes the clients table: the next up makes it.
  while ((await migrationStatus(superuser.db)).find((m) => m.name === '0004_clients')?.appliedAt != null) await migrateDown(superuser.db)

  const up = await runCli(['migrate', 'up'], { DATABASE_URL: superuserUrl })
  t.equal(up.code, 0, `it migrated: ${up.stderr}`)
  const superuserName = new URL(superuserUrl).username
  t.match(up.stderr, `tessera: migrations applied as ${superuserName}, not as ${roles.owner.name}, the owner of schema public: the tables they made (clients) are ${superuserName}'s, and the runtime role may not use them until \`tessera db roles\` gives them to ${roles.owner.name}: run it now, as a superuser with the three roles' passwords, and \`migrate up\` as the owner role from now on (docs/operators.md, "Database roles")`)
  t.notMatch(up.stdout, /tessera_app|db roles/, 'stdout is the result alone')

  const runtime = new pg.Client({ connectionString: urlAs(superuserUrl, roles.runtime) })
  await runtime.connect()
  t.teardown(async () => { await runtime.end() })
  await t.rejects(runtime.query('SELECT count(*) FROM clients'), { code: '42501' }, 'why: the runtime role may not read it')
  await ensureRoles(superuser.db, roles)
  await runtime.query('SELECT count(*) FROM clients')
  t.pass('db roles gave it to the owner, and the default grants followed')

  const again = await runCli(['migrate', 'up'], { DATABASE_URL: superuserUrl })
  t.equal(again.stderr, '', 'nothing applied, nothing to say')
  await migrateDown(superuser.db)
  const asOwner = await runCli(['migrate', 'up'], { DATABASE_URL: urlAs(superuserUrl, roles.owner) })
  t.equal(asOwner.code, 0, asOwner.stderr)
  t.equal(asOwner.stderr, '', 'as the owner role: nothing to say')
})

t.test('public owned by a role db roles never set up (a managed Postgres\'s admin group): migrate up as a member of it says nothing', async (t) => {
  const suffix = randomBytes(4).toString('hex')
  const group = `t_admins_${suffix}`
  const admin = { name: `t_admin_${suffix}`, password: randomBytes(12).toString('base64url') }
  const superuserUrl = await createTestDatabase(t)
  const superuser = new pg.Client({ connectionString: superuserUrl })
  await superuser.connect()
  t.teardown(async () => {
    // The roles own the tables in this database: gone with them, before the roles are.
    await superuser.query(`DROP OWNED BY "${admin.name}", "${group}"`)
    await superuser.end()
    for (const role of [admin.name, group]) await asAdmin(`DROP ROLE IF EXISTS "${role}"`)
  })
  // As Azure's flexible server has it before Postgres 15: public is azure_pg_admin's, a group
  // role that is no superuser, and the login an operator is given is a member of it.
  await superuser.query(`CREATE ROLE "${group}" NOLOGIN NOSUPERUSER`)
  await superuser.query(`CREATE ROLE "${admin.name}" LOGIN NOSUPERUSER PASSWORD '${admin.password}' IN ROLE "${group}"`)
  await superuser.query('DROP SCHEMA public CASCADE')
  await superuser.query(`CREATE SCHEMA public AUTHORIZATION "${group}"`)

  const up = await runCli(['migrate', 'up'], { DATABASE_URL: urlAs(superuserUrl, admin) })
  t.equal(up.code, 0, up.stderr)
  t.match(up.stdout, /applied 0001_initial/)
  t.equal(up.stderr, '', 'no db roles set public up: nothing to hand over, and no runtime role to be refused')
})
