/**
 * A login flood from a separate process, so the test's own latency probes
 * are not delayed by the client work of hundreds of requests.
 */
import { spawnProcess } from '@tessera/testkit'

export interface FloodResult {
  statuses: Record<string, number>
  errors: number
  sent: number
}

const SCRIPT = `
const [url, concurrency, seconds] = process.argv.slice(1)
const deadline = Date.now() + Number(seconds) * 1000
const statuses = {}
let errors = 0
let sent = 0
async function worker (w) {
  for (let i = 0; Date.now() < deadline; i++) {
    sent++
    try {
      const res = await fetch(url + '/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'password', username: 'flood' + w + 'x' + i, password: 'flood password ' + i })
      })
      await res.arrayBuffer()
      statuses[res.status] = (statuses[res.status] ?? 0) + 1
    } catch { errors++ }
  }
}
await Promise.all(Array.from({ length: Number(concurrency) }, (_, w) => worker(w)))
process.stdout.write(JSON.stringify({ statuses, errors, sent }))
`

/** Runs `concurrency` looping password grants against `url` for `seconds`; unknown usernames, so nothing backs off. */
export async function flood (url: string, concurrency: number, seconds: number): Promise<FloodResult> {
  const client = spawnProcess(process.execPath, ['--input-type=module', '-e', SCRIPT, url, String(concurrency), String(seconds)], { env: process.env })
  const timer = setTimeout(() => { void client.stop('SIGKILL') }, (seconds + 30) * 1000)
  const code = await client.closed
  clearTimeout(timer)
  if (code !== 0) throw new Error(`the flood process exited with ${code}: ${client.stderr()}`)
  return JSON.parse(client.stdout()) as FloodResult
}
