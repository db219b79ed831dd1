/**
 * util/rpc.ts's lineChannel, over a real socket pair: what an HTTP worker and
 * the hashing process speak. Messages arrive whole however the stream cuts
 * them; a line that is not JSON, or grows past the bound, ends the
 * connection; a closed connection refuses to send.
 */
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Asker, answer, lineChannel, PeerGone } from '../../src/util/rpc.js'

async function socketPair (t: Test): Promise<{ client: Socket, server: Socket }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-rpc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const listener = createServer()
  const accepted = once(listener, 'connection') as Promise<[Socket]>
  await new Promise<void>((resolve) => listener.listen(path.join(dir, 's.sock'), resolve))
  const client = connect(path.join(dir, 's.sock'))
  const [server] = await accepted
  t.teardown(() => { client.destroy(); server.destroy(); listener.close() })
  return { client, server }
}

t.test('each message arrives whole, whether the stream splits it or joins several, newlines inside strings included', async (t) => {
  const { client, server } = await socketPair(t)
  const received: unknown[] = []
  lineChannel(server, (message) => received.push(message))
  const messages = [{ kind: 'a', body: 'two\nlines' }, { kind: 'b', body: 'é'.repeat(3000) }, { kind: 'c', body: null }]
  const text = messages.map((m) => `${JSON.stringify(m)}\n`).join('')
  // Cut inside a message and inside a two-byte character.
  const bytes = Buffer.from(text)
  for (const [from, to] of [[0, 7], [7, 4000], [4000, bytes.length]] as const) {
    client.write(bytes.subarray(from, to))
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(received, messages)
})

t.test('asked and answered over it, as a worker asks the hashing process', async (t) => {
  const { client, server } = await socketPair(t)
  const toClient = lineChannel(server, (message) => {
    answer(toClient, message as never, { double: async (n: number) => n * 2 }, () => false, () => {})
  })
  const asker = new Asker()
  const toServer = lineChannel(client, (message) => { asker.settle(message as never) })
  t.same(await Promise.all([1, 2, 3].map(async (n) => await asker.ask<number>(toServer, 'double', n))), [2, 4, 6])
})

t.test('a line that is not JSON ends the connection, and so does one past the bound', async (t) => {
  for (const garbage of ['not json\n', 'x'.repeat(1024 * 1024 + 10)]) {
    const { client, server } = await socketPair(t)
    const received: unknown[] = []
    lineChannel(server, (message) => received.push(message))
    const closed = once(client, 'close')
    client.on('error', () => {})
    client.write(garbage)
    await closed
    t.same(received, [], `nothing delivered (${garbage.length} characters)`)
  }
})

t.test('sending on a closed connection throws PeerGone, which an ask turns into its rejection', async (t) => {
  const { client } = await socketPair(t)
  const send = lineChannel(client, () => {})
  client.destroy()
  t.throws(() => { send({ tessera: 'notice', kind: 'x', body: null }) }, PeerGone)
  await t.rejects(new Asker().ask(send, 'anything'), PeerGone)
})
