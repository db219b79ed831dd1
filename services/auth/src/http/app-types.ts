/**
 * What buildApp is built from (Deps) and what it returns (App), apart from
 * app.ts so that routes and tests name them without importing the app.
 * @module
 */
import type { FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify'
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Logger } from 'pino'
import type { ClientCache } from '../clients/cache.js'
import type { Db } from '../db/database.js'
import type { RefreshDecisions } from '../grants/refresh-decisions.js'
import type { Keyring } from '../keys/keyring.js'
import type { Metrics } from '../metrics/metrics.js'
import type { PasswordHashing } from '../passwords/hasher.js'

export interface Deps {
  db: Db
  logger: Logger
  keyring: Keyring
  hasher: PasswordHashing
  metrics: Metrics
  /** Injectable for frozen-clock tests. */
  clock: () => Date
  /** Where the per-IP counters live; this process's memory when unset. An HTTP worker counts in its primary. */
  rateLimitStore?: FastifyRateLimitStoreCtor
  /** Client rows kept in memory while the primary relays every change to them (an HTTP worker's); unset, every client read goes to the database. */
  clientCache?: ClientCache
  /** The process's refresh decisions, sent to Postgres together (grants/refresh-decisions.ts); one per process, shared by every route that refreshes. */
  refreshDecisions: RefreshDecisions
}

export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Logger, TypeBoxTypeProvider>
