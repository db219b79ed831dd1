/**
 * A real Tessera (the compiled services/auth server, its own process) on a
 * fresh database cloned from the test template that scripts/with-test-db.mjs
 * prepared; the database is dropped when the test ends.
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { request, runProcess, spawnProcess, type RequestOptions } from '@tessera/testkit'

const TESSERA_SERVER = fileURLToPath(new URL('../../auth/dist/server.js', import.meta.url))
const TESSERA_CLI = fileURLToPath(new URL('../../auth/bin/tessera.js', import.meta.url))

export { createTestDatabase } from '@tessera/testkit'

export interface Tessera { url: string, stop: () => Promise<void> }

export async function startTessera (t: Test, env: Record<string, string>): Promise<Tessera> {
  const tessera = spawnProcess(process.execPath, [TESSERA_SERVER], { env: { PATH: process.env.PATH ?? '', PORT: '0', TESSERA_KEK: randomBytes(32).toString('base64url'), ...env } })
  const stop = async (): Promise<void> => { await tessera.stop('SIGKILL') }
  t.teardown(stop)
  const [, url = ''] = await tessera.waitFor(/"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/, 60_000, 'tessera')
  return { url, stop }
}

export async function json (url: string, options: RequestOptions = {}): Promise<{ status: number, body: Record<string, unknown> }> {
  const reply = await request(url, { ...options, headers: { 'content-type': 'application/json', ...options.headers } })
  return { status: reply.status, body: reply.json() }
}

/** A compact JWS signed with a key of our own, for tokens Tessera would never mint. */
export function forge (header: Record<string, unknown>, claims: Record<string, unknown>, sign: (data: string) => Buffer): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const data = `${part(header)}.${part(claims)}`
  return `${data}.${sign(data).toString('base64url')}`
}

/** `tessera ARGS… --json` against a database, as an operator runs it (`keys` commands also need the server's TESSERA_KEK); returns its JSON. */
export async function tesseraCli (env: { DATABASE_URL: string, TESSERA_KEK?: string }, args: string[]): Promise<Record<string, unknown>> {
  const cli = await runProcess(process.execPath, [TESSERA_CLI, ...args, '--json'], { env: { PATH: process.env.PATH ?? '', ...env } })
  if (cli.code !== 0) throw new Error(`tessera ${args.join(' ')} failed: ${cli.stdout}${cli.stderr}`)
  return JSON.parse(cli.stdout) as Record<string, unknown>
}

/** `tessera clients create … --json` against a database, as an operator registers a client; returns its JSON. */
export async function registerClient (databaseUrl: string, args: string[]): Promise<{ client_id: string, client_secret?: string }> {
  const cli = await runProcess(process.execPath, [TESSERA_CLI, 'clients', 'create', ...args, '--json'], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl } })
  if (cli.code !== 0) throw new Error(`clients create failed: ${cli.stdout}${cli.stderr}`)
  return JSON.parse(cli.stdout) as { client_id: string, client_secret?: string }
}
