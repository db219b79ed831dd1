/**
 * The hashing process (dist/passwords/hashing-process.js), as the primary
 * forks it: a request it fails is logged as every other process logs, one
 * JSON line at error, not raw text in the middle of the JSON log.
 */
import t from 'tap'
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ENTRY = fileURLToPath(new URL('../../dist/passwords/hashing-process.js', import.meta.url))

t.test('a failed request is one JSON log line at error, and answered as failed', async (t) => {
  const child = fork(ENTRY, ['0', '1'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'json' })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const messages: unknown[] = []
  const next = async (matches: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => await new Promise((resolve) => {
    const seen = messages.find((m) => matches(m as Record<string, unknown>))
    if (seen !== undefined) { resolve(seen as Record<string, unknown>); return }
    const listen = (message: unknown): void => {
      if (!matches(message as Record<string, unknown>)) return
      child.off('message', listen)
      resolve(message as Record<string, unknown>)
    }
    child.on('message', listen)
  })
  child.on('message', (message) => { messages.push(message) })
  await next((m) => m.tessera === 'notice' && m.kind === 'ready')
  child.send({ tessera: 'ask', id: 1, kind: 'no-such-kind', body: null })
  t.match(await next((m) => m.tessera === 'answer' && m.id === 1), { refused: 'failed' })
  for (let waited = 0; !output.includes('\n') && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20))
  const lines = output.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(JSON.parse(lines[0] ?? '{}'), { level: 50, msg: 'a request to the hashing process failed', kind: 'no-such-kind', err: { message: 'no handler for no-such-kind' } })
})
