/**
 * A login flood from a separate process, so the test's own latency probes
 * are not delayed by the client work of hundreds of requests.
 */
import { spawn } from 'node:child_process'

export interface FloodResult {
  statuses: Record<string, number>
  errors: number
  sent: number
  /** 503 answers that came without a Retry-After header. */
  shedWithoutRetryAfter: number
  /** 200 answers that came after the first 503: hashing went on while sheds were answered. */
  okAfterFirstShed: number
}

export interface Credentials { username: string, password: string }

const SCRIPT = `
const [url, concurrency, seconds, usersJson] = process.argv.slice(1)
const users = JSON.parse(usersJson)
const deadline = Date.now() + Number(seconds) * 1000
const statuses = {}
let okAfterFirstShed = 0
let errors = 0
let sent = 0
let shedWithoutRetryAfter = 0
async function worker (w) {
  for (let i = 0; Date.now() < deadline; i++) {
    sent++
    const user = users.length === 0 ? { username: 'flood' + w + 'x' + i, password: 'flood password ' + i } : users[w % users.length]
    try {
      const res = await fetch(url + '/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'password', ...user })
      })
      await res.arrayBuffer()
      statuses[res.status] = (statuses[res.status] ?? 0) + 1
      if (res.status === 503 && res.headers.get('retry-after') === null) shedWithoutRetryAfter++
      if (res.status === 200 && statuses['503'] !== undefined) okAfterFirstShed++
    } catch { errors++ }
  }
}
await Promise.all(Array.from({ length: Number(concurrency) }, (_, w) => worker(w)))
process.stdout.write(JSON.stringify({ statuses, errors, sent, shedWithoutRetryAfter, okAfterFirstShed }))
`

/**
 * Runs `concurrency` looping password grants against `url` for `seconds`.
 * Without `users`, unknown usernames, so nothing backs off; with them, worker
 * w logs in as users[w % users.length] again and again.
 */
export async function flood (url: string, concurrency: number, seconds: number, users: Credentials[] = []): Promise<FloodResult> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, url, String(concurrency), String(seconds), JSON.stringify(users)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  clearTimeout(timer)
  if (code !== 0) throw new Error(`the flood process exited with ${code}`)
  return JSON.parse(out) as FloodResult
}
