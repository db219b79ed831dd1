/**
 * What the two routes that run grants share, /oauth/token and SimpleJWT's
 * views: the deps a grant needs, and how a refused grant is counted.
 * @module
 */
import type { Config } from '../config.js'
import { isDatabaseUnavailable, OAuthError, RefreshReuseError } from '../errors.js'
import type { Deps } from '../http/app-types.js'
import type { LoginOutcome, RefreshOutcome } from '../metrics/metrics.js'
import type { LoginDeps } from '../grants/password.js'
import type { RefreshIssuer } from '../grants/refresh.js'
import { backoffPolicy } from '../passwords/login-throttle.js'

/** How a refused grant shows in the counters; undefined when it is not a refusal worth counting (a malformed request). */
export function loginOutcome (err: unknown): LoginOutcome | undefined {
  // Answered 503 by the error handler: counted, so an outage shows beside the logins it stopped.
  if (isDatabaseUnavailable(err)) return 'unavailable'
  if (!(err instanceof OAuthError)) return undefined
  if (err.status === 429) return 'backed_off'
  if (err.status === 503) return 'shed'
  return err.error === 'invalid_grant' ? 'failed' : undefined
}

export function refreshOutcome (err: unknown): RefreshOutcome | undefined {
  if (isDatabaseUnavailable(err)) return 'unavailable'
  if (err instanceof RefreshReuseError) return 'reuse'
  return err instanceof OAuthError && err.error === 'invalid_grant' ? 'refused' : undefined
}

export async function counted<T, O> (work: () => Promise<T>, classify: (err: unknown) => O | undefined, count: (outcome: O) => void): Promise<T> {
  try {
    return await work()
  } catch (err) {
    const outcome = classify(err)
    if (outcome !== undefined) count(outcome)
    throw err
  }
}

/** What the refresh grant (and every other grant that signs) needs, for every route that issues tokens. */
export function issuerOf (config: Config, deps: Deps): RefreshIssuer & { config: Config } {
  return { db: deps.db, keyring: deps.keyring, config, clientCache: deps.clientCache, refreshDecisions: deps.refreshDecisions }
}

/** What the password grant needs, for every route that logs in. */
export function loginDepsOf (config: Config, deps: Deps): LoginDeps {
  return {
    db: deps.db,
    keyring: deps.keyring,
    config,
    clientCache: deps.clientCache,
    hasher: deps.hasher,
    backoff: backoffPolicy(config)
  }
}
