/**
 * A real Tessera (the compiled services/auth server, its own process) on a
 * fresh database cloned from the test template that scripts/with-test-db.mjs
 * prepared; the database is dropped when the test ends.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import type { Test } from 'tap'

const TESSERA_SERVER = fileURLToPath(new URL('../../auth/dist/server.js', import.meta.url))
const TESSERA_CLI = fileURLToPath(new URL('../../auth/bin/tessera.js', import.meta.url))

async function admin (sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.TESSERA_TEST_ADMIN_URL })
  await client.connect()
  try { await client.query(sql) } finally { await client.end() }
}

export async function createTestDatabase (t: Test): Promise<string> {
  const adminUrl = process.env.TESSERA_TEST_ADMIN_URL
  const template = process.env.TESSERA_TEST_TEMPLATE
  if (adminUrl === undefined || template === undefined) throw new Error('run the tests through `npm test` (scripts/with-test-db.mjs provides the database)')
  const name = `tessera_t_${randomBytes(6).toString('hex')}`
  await admin(`CREATE DATABASE "${name}" TEMPLATE "${template}"`)
  t.teardown(async () => { await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) })
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

export interface Tessera { url: string, stop: () => Promise<void> }

export async function startTessera (t: Test, env: Record<string, string>): Promise<Tessera> {
  const child = spawn(process.execPath, [TESSERA_SERVER], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', TESSERA_KEK: randomBytes(32).toString('base64url'), ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  t.teardown(stop)
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tessera did not start:\n${output}`)), 60_000)
    child.stderr.on('data', (c: Buffer) => { output += c.toString() })
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString()
      const match = /"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/.exec(output)
      if (match?.[1] !== undefined) { clearTimeout(timer); resolve(match[1]) }
    })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`tessera exited:\n${output}`)) })
  })
  return { url, stop }
}

export async function json (url: string, init: RequestInit = {}): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...init.headers } })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

/** A compact JWS signed with a key of our own, for tokens Tessera would never mint. */
export function forge (header: Record<string, unknown>, claims: Record<string, unknown>, sign: (data: string) => Buffer): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const data = `${part(header)}.${part(claims)}`
  return `${data}.${sign(data).toString('base64url')}`
}

/** `tessera clients create … --json` against a database, as an operator registers a client; returns its JSON. */
export async function registerClient (databaseUrl: string, args: string[]): Promise<{ client_id: string, client_secret?: string }> {
  const child = spawn(process.execPath, [TESSERA_CLI, 'clients', 'create', ...args, '--json'], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  if (code !== 0) throw new Error(`clients create failed: ${out}`)
  return JSON.parse(out) as { client_id: string, client_secret?: string }
}
