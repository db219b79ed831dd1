/**
 * Talking to a spawned server over real HTTP, as a client and a verifier would.
 */
import { request } from '@tessera/testkit'
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose'

export interface TokenBody {
  access_token: string
  refresh_token: string
}

export async function postJson (url: string, body: object): Promise<{ status: number, body: Record<string, unknown> }> {
  const reply = await request(url, { method: 'POST', body })
  return { status: reply.status, body: reply.json() }
}

export async function signUpOver (base: string, username: string, password: string): Promise<void> {
  const res = await postJson(`${base}/v1/users`, { username, password })
  if (res.status !== 201) throw new Error(`sign-up failed: ${res.status} ${JSON.stringify(res.body)}`)
}

export async function loginOver (base: string, username: string, password: string): Promise<TokenBody> {
  const res = await postJson(`${base}/oauth/token`, { grant_type: 'password', username, password })
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as unknown as TokenBody
}

export async function refreshOver (base: string, refreshToken: string): Promise<{ status: number, body: Record<string, unknown> }> {
  return await postJson(`${base}/oauth/token`, { grant_type: 'refresh_token', refresh_token: refreshToken })
}

export async function jwksKids (base: string): Promise<string[]> {
  const res = await fetch(`${base}/.well-known/jwks.json`)
  return ((await res.json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
}

export const kidOf = (jwt: string): string =>
  (JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid

/** A verifier as a sibling service runs it: jose's remote JWKS, its cache mirroring the JWKS max-age. */
export function remoteVerifier (base: string, maxAgeMs: number): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`), { cacheMaxAge: maxAgeMs, cooldownDuration: maxAgeMs })
}

export async function verifyAccess (token: string, keys: JWTVerifyGetKey, issuer: string): Promise<string> {
  const { protectedHeader } = await jwtVerify(token, keys, { issuer, audience: 'api', typ: 'at+jwt', algorithms: ['RS256'] })
  return protectedHeader.kid ?? ''
}

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** Polls until `check` holds or `ms` pass; returns the milliseconds it took, or undefined. */
export async function within (ms: number, check: () => Promise<boolean>, stepMs = 25): Promise<number | undefined> {
  const start = Date.now()
  while (Date.now() - start <= ms) {
    if (await check()) return Date.now() - start
    await sleep(stepMs)
  }
  return undefined
}

/** How long a log line may take to appear: generous, since only a line never written should run it out. */
export const LOG_LINE_DEADLINE_MS = 15_000

/**
 * What `read` returns once it holds `count` lines: for a log whose writer may
 * write a request's line after its answer was read. Throws, naming both
 * numbers, when they are not all there within LOG_LINE_DEADLINE_MS.
 */
export async function linesOnceIn (what: string, count: number, read: () => string[]): Promise<string[]> {
  if (await within(LOG_LINE_DEADLINE_MS, async () => read().length >= count, 20) === undefined) {
    throw new Error(`${what} holds ${read().length} of the ${count} lines expected, ${LOG_LINE_DEADLINE_MS} ms on`)
  }
  return read()
}
