/**
 * The toolkit's own promises, on real processes, sockets and streams: what
 * every test of auth, notes and bench relies on when it spawns or listens.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { test } from 'node:test'
import { pino } from 'pino'
import { createServer as createTcpServer } from 'node:net'
import { freePort, memorySink, request, runProcess, spawnProcess, trickleRequest } from '../dist/index.js'

const node = process.execPath

test('runProcess returns the exit code and both outputs, and feeds stdin', async () => {
  const result = await runProcess(node, ['-e', 'process.stdin.pipe(process.stdout); process.stderr.write("err"); process.exitCode = 3'], { stdin: 'fed' })
  assert.deepEqual(result, { code: 3, stdout: 'fed', stderr: 'err' })
})

test('the child sees only the environment it is given', async () => {
  const { stdout } = await runProcess(node, ['-e', 'process.stdout.write(JSON.stringify([process.env.KEPT, process.env.HOME]))'], { env: { KEPT: 'yes' } })
  assert.deepEqual(JSON.parse(stdout), ['yes', null])
})

test('waitFor resolves on a match, rejects on exit or timeout with the output', async () => {
  const serving = spawnProcess(node, ['-e', 'console.log("listening on 4242"); setInterval(() => {}, 1000)'])
  const [, port] = await serving.waitFor(/listening on (\d+)/, 10_000)
  assert.equal(port, '4242')
  assert.equal(await serving.stop('SIGTERM'), null, 'killed by the signal')

  const dying = spawnProcess(node, ['-e', 'console.error("bad config"); process.exit(1)'])
  await assert.rejects(dying.waitFor(/listening/, 10_000, 'the server'), /the server: the process exited first:\nbad config/)

  const silent = spawnProcess(node, ['-e', 'setInterval(() => {}, 1000)'])
  await assert.rejects(silent.waitFor(/listening/, 50, 'the server'), /the server: not seen within 50 ms/)
  await silent.stop('SIGKILL')
})

test('stop escalates to SIGKILL when the signal is ignored', async () => {
  const stubborn = spawnProcess(node, ['-e', 'process.on("SIGTERM", () => {}); console.log("ready"); setInterval(() => {}, 1000)'])
  await stubborn.waitFor(/ready/, 10_000)
  assert.equal(await stubborn.stop('SIGTERM', 100), null)
  assert.equal(stubborn.child.signalCode, 'SIGKILL')
})

test('freePort gives a port that can be listened on', async (t) => {
  const port = await freePort()
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => res.end(JSON.stringify({ method: req.method, type: req.headers['content-type'] ?? null, body })))
  })
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.after(() => server.close())

  const posted = await request(`http://127.0.0.1:${port}/x`, { method: 'POST', body: { a: 1 } })
  assert.equal(posted.status, 200)
  assert.deepEqual(posted.json(), { method: 'POST', type: 'application/json', body: '{"a":1}' }, 'an object goes as JSON')
  const raw = await request(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  assert.deepEqual(raw.json(), { method: 'POST', type: 'application/x-www-form-urlencoded', body: 'a=1' }, 'a string goes as it is')
  assert.equal((await request(`http://127.0.0.1:${port}/`)).json().method, 'GET')
})

test('freePort picks below the kernel\'s ephemeral range, where no outgoing connection can take the port before the caller listens on it', async () => {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
  assert.ok(low > 21_000, `this machine's ephemeral range starts at ${low}, leaving room below it`)
  const ports = await Promise.all(Array.from({ length: 20 }, async () => await freePort()))
  for (const port of ports) assert.ok(port >= 20_000 && port < low, `${port} is in 20000–${low - 1}`)
})

test('memorySink keeps every log line pino writes', () => {
  const sink = memorySink()
  const logger = pino({ base: undefined, timestamp: false }, sink.stream)
  logger.info('one')
  logger.warn({ n: 2 }, 'two')
  assert.deepEqual(sink.lines().map((line) => JSON.parse(line)), [{ level: 30, msg: 'one' }, { level: 40, n: 2, msg: 'two' }])
  assert.equal(sink.text(), sink.lines().join(''))
})

test('trickleRequest sends its head, then a byte at a time, until the server closes or the deadline passes', async () => {
  const received = []
  const server = createTcpServer((socket) => {
    socket.on('data', (chunk) => { received.push(chunk.toString()) })
    // Answers and closes once three more bytes have come after the head.
    const check = setInterval(() => {
      if (received.join('').length >= 'HEAD'.length + 3) { clearInterval(check); socket.end('HTTP/1.1 408 Request Timeout\r\n\r\n') }
    }, 5)
    socket.on('close', () => clearInterval(check))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  const closed = await trickleRequest(port, 'HEAD', { everyMs: 20, deadlineMs: 5000 })
  assert.equal(closed.closed, true)
  assert.match(closed.answer, /^HTTP\/1\.1 408 /)
  assert.equal(received.join('').slice(0, 7), 'HEAD   ')
  server.close()

  const silent = createTcpServer(() => {})
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const open = await trickleRequest(silent.address().port, 'HEAD', { everyMs: 20, deadlineMs: 200 })
  assert.equal(open.closed, false, 'still open at the deadline: reported, not waited for')
  assert.equal(open.answer, '')
  silent.close()
})

test('atExit runs its works as a signal ends the process, newest first; a dropped one does not run', async () => {
  const script = `
    const { atExit } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)})
    atExit(() => process.stdout.write('first registered\\n'))
    const drop = atExit(() => process.stdout.write('dropped\\n'))
    atExit(() => process.stdout.write('last registered\\n'))
    drop()
    console.log('ready')
    setInterval(() => {}, 1000)`
  const held = spawnProcess(node, ['--input-type=module', '-e', script])
  await held.waitFor(/ready/, 10_000)
  held.child.kill('SIGTERM')
  assert.equal(await held.closed, null, 'still ended by the signal')
  assert.equal(held.child.signalCode, 'SIGTERM')
  assert.equal(held.stdout(), 'ready\nlast registered\nfirst registered\n')
})
