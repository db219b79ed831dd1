/**
 * The embedded Postgres's options and URLs (db/embedded-options.ts): a Unix socket in
 * the data directory when the path allows one, TCP on loopback otherwise.
 * The server actually started with them: test/e2e/server.test.ts.
 */
import t from 'tap'
import { embeddedUrl, serverOptions } from '../../src/db/embedded-options.js'

t.test('the server gets a socket in its data directory when the path can hold one', async (t) => {
  t.equal(serverOptions('/var/tmp/tessera-postgres/data-0123456789abcdef', 5432), '-p 5432 -k /var/tmp/tessera-postgres/data-0123456789abcdef')
  t.equal(serverOptions(`/srv/${'d'.repeat(90)}`, 5432), '-p 5432', 'a path past the kernel\'s socket path length: TCP only')
  t.equal(serverOptions('/home/sam/my checkout/.data/postgres', 5432), '-p 5432', 'a path pg_ctl\'s command line would have to quote: TCP only')
})

t.test('the URL goes through the socket when the server has one', async (t) => {
  t.equal(embeddedUrl('p@ss', 5432, '/var/tmp/x', 'tessera'), 'postgres://tessera:p%40ss@127.0.0.1:5432/tessera?host=%2Fvar%2Ftmp%2Fx')
  t.equal(embeddedUrl('p@ss', 5432, '', 'postgres'), 'postgres://tessera:p%40ss@127.0.0.1:5432/postgres', 'a server without a socket (one started before this change): TCP')
})
