/**
 * The embedded Postgres's options and URLs (db/embedded-options.ts): a Unix socket in
 * the data directory when the path allows one, TCP on loopback otherwise.
 * The server actually started with them: test/e2e/server.test.ts.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { processIsGone } from '../../src/util/process-gone.js'
import { notRootsAlone } from '../../src/util/roots-alone.js'
import { embeddedMaxConnections, embeddedUrl, portInPostmasterOpts, serverOptions } from '../../src/db/embedded-options.js'
import { instanceConnections } from '../../src/cluster/pool.js'
import { portIsFree } from '../../src/util/free-port.js'

t.test('the server gets a socket in its data directory when the path can hold one', async (t) => {
  t.equal(serverOptions('/var/tmp/tessera-postgres/data-0123456789abcdef', 5432), '-p 5432 -c max_connections=200 -k /var/tmp/tessera-postgres/data-0123456789abcdef')
  t.equal(serverOptions(`/srv/${'d'.repeat(90)}`, 5432), '-p 5432 -c max_connections=200', 'a path past the kernel\'s socket path length: TCP only')
  t.equal(serverOptions('/home/sam/my checkout/.data/postgres', 5432), '-p 5432 -c max_connections=200', 'a path pg_ctl\'s command line would have to quote: TCP only')
})

t.test('max_connections: 200, or room for every connection of the instance and a few commands', async (t) => {
  t.equal(embeddedMaxConnections(instanceConnections(2)), 200, 'two workers: 26 connections')
  t.equal(instanceConnections(46), 190)
  t.equal(embeddedMaxConnections(instanceConnections(46)), 214, '46 workers: 190, and 24 for commands')
  t.equal(instanceConnections(256), 1030)
  t.equal(embeddedMaxConnections(instanceConnections(256)), 1054, 'TESSERA_WORKERS at its most')
  t.equal(serverOptions('/srv/pg', 5432, 1054), '-p 5432 -c max_connections=1054 -k /srv/pg')
})

t.test('the URL goes through the socket when the server has one', async (t) => {
  t.equal(embeddedUrl('p@ss', 5432, '/var/tmp/x', 'tessera'), 'postgres://tessera:p%40ss@127.0.0.1:5432/tessera?host=%2Fvar%2Ftmp%2Fx')
  t.equal(embeddedUrl('p@ss', 5432, '', 'postgres'), 'postgres://tessera:p%40ss@127.0.0.1:5432/postgres', 'a server without a socket (one started before this change): TCP')
})

t.test('a restart finds the port the cluster last listened on, in the postmaster.opts Postgres leaves behind', async (t) => {
  t.equal(portInPostmasterOpts('/x/bin/postgres "-D" "/var/tmp/d" "-p" "44193" "-k" "/var/tmp/d"\n'), 44193)
  t.equal(portInPostmasterOpts('/x/bin/postgres "-D" "/d" "-p" "5432"\n'), 5432, 'a cluster without a socket')
  t.equal(portInPostmasterOpts(''), undefined, 'never started: no file')
  t.equal(portInPostmasterOpts('/x/bin/postgres "-D" "/d"\n'), undefined, 'started without a port')
  t.equal(portInPostmasterOpts('/x/bin/postgres "-p" "70000"\n'), undefined, 'not a port')
})

t.test('portIsFree: false while something listens on the port, true once it is gone', async (t) => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  t.equal(await portIsFree(port), false)
  await new Promise((resolve) => server.close(resolve))
  t.equal(await portIsFree(port), true)
})

t.test('processIsGone: a running process is not, one reaped or exited and unreaped (a zombie) is', async (t) => {
  // A parent that forks a child which exits at once and never reaps it: the zombie a postmaster stopped by an
  // instance running as PID 1 with no init becomes, which still takes signals. Not sh (`true & …; exec sleep`):
  // dash may reap its background job before the exec, and the child's /proc entry was then gone.
  const parent = spawn('/usr/bin/python3', ['-c', 'import os, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(30)'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { parent.kill() })
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (chunk: Buffer) => { resolve(chunk.toString().trim()) })))
  // `true` exits at once; its state turns Z within moments.
  const isZombie = async (): Promise<boolean> => /^\d+ \(.*\) Z /.test(await readFile(`/proc/${zombie}/stat`, 'utf8'))
  for (let i = 0; i < 500 && !await isZombie(); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(await isZombie(), 'the child is a zombie')
  t.ok(processIsGone(zombie), 'an exited child not yet reaped')
  t.notOk(processIsGone(parent.pid ?? 0), 'a running process')
  t.notOk(processIsGone(process.pid), 'this one')
  parent.kill()
  await new Promise((resolve) => parent.once('exit', resolve))
  t.ok(processIsGone(parent.pid ?? 0), 'one exited and reaped')
})

t.test('notRootsAlone: the directory root keeps clusters in (/var/tmp/tessera-postgres) must be root\'s alone', { skip: process.getuid?.() !== 0 && 'not root: only root keeps clusters outside their data directories' }, async (t) => {
  const parent = await mkdtemp(path.join(tmpdir(), 'shared-root-'))
  t.teardown(async () => { await rm(parent, { recursive: true, force: true }) })
  const dir = path.join(parent, 'tessera-postgres')
  t.equal(await notRootsAlone(dir), undefined, 'absent: the start makes it')
  await mkdir(dir, { mode: 0o755 })
  await chmod(dir, 0o755)
  t.equal(await notRootsAlone(dir), undefined, 'root\'s, 0755')
  await chmod(dir, 0o775)
  t.equal(await notRootsAlone(dir), `${dir} may be written by others than root (mode 775)`)
  await chmod(dir, 0o1777)
  t.equal(await notRootsAlone(dir), `${dir} may be written by others than root (mode 777)`, 'sticky or not')
  await chmod(dir, 0o755)
  await chown(dir, 65534, 65534)
  t.equal(await notRootsAlone(dir), `${dir} belongs to uid 65534, not to root`, 'made first by another user')
  await rm(dir, { recursive: true })
  const elsewhere = path.join(parent, 'elsewhere')
  await mkdir(elsewhere, { mode: 0o755 })
  await symlink(elsewhere, dir)
  t.equal(await notRootsAlone(dir), `${dir} is not a directory`, 'a link, even to a directory of root\'s')
  await rm(dir)
  await writeFile(dir, '')
  t.equal(await notRootsAlone(dir), `${dir} is not a directory`)
})
