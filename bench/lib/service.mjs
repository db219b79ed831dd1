/**
 * Everything the harness takes from Tessera's own code, in one place: the
 * built modules (services/auth/dist, so the benchmark runs exactly what `make
 * run` runs), each typed by the TypeScript source it was built from. When a
 * service file moves, this is the one file to change, and `npm run lint`
 * (bench/tsconfig.json) fails here if a signature the harness relies on
 * changes.
 * @module
 */
// @ts-check
import { fileURLToPath } from 'node:url'

/**
 * A built module: `make run`'s code, typed by each caller's cast to the source
 * module it was built from (the build is tsc's output of that very source).
 * @param {string} file under services/auth/dist @returns {Promise<any>}
 */
const built = async (file) => await import(new URL(`../../services/auth/dist/${file}`, import.meta.url).href)

const register = /** @type {typeof import('../../services/auth/src/clients/register.js')} */ (await built('clients/register.js'))
const clientAuth = /** @type {typeof import('../../services/auth/src/clients/authenticate.js')} */ (await built('clients/authenticate.js'))
const cluster = /** @type {typeof import('../../services/auth/src/cluster/pool.js')} */ (await built('cluster/pool.js'))
const connection = /** @type {typeof import('../../services/auth/src/db/connect.js')} */ (await built('db/connect.js'))
const embedded = /** @type {typeof import('../../services/auth/src/db/embedded.js')} */ (await built('db/embedded.js'))
const migrations = /** @type {typeof import('../../services/auth/src/db/migrate.js')} */ (await built('db/migrate.js'))
const keyring = /** @type {typeof import('../../services/auth/src/keys/keyring.js')} */ (await built('keys/keyring.js'))
const keyLoading = /** @type {typeof import('../../services/auth/src/keys/load.js')} */ (await built('keys/load.js'))
const hasher = /** @type {typeof import('../../services/auth/src/passwords/hasher.js')} */ (await built('passwords/hasher.js'))
const rotation = /** @type {typeof import('../../services/auth/src/grants/refresh.js')} */ (await built('grants/refresh.js'))
const mint = /** @type {typeof import('../../services/auth/src/tokens/mint.js')} */ (await built('tokens/mint.js'))
const profile = /** @type {typeof import('../../services/auth/src/users/profile.js')} */ (await built('users/profile.js'))

/** The server `make run` starts. */
export const SERVER_ENTRY = fileURLToPath(new URL('../../services/auth/dist/server.js', import.meta.url))
/** The sibling resource service. */
export const NOTES_ENTRY = fileURLToPath(new URL('../../services/notes/dist/server.js', import.meta.url))

export const { connect } = connection
export const { startEmbeddedPostgres, stopEmbeddedPostgres } = embedded
export const { migrateUp } = migrations
export const { workerPoolSize } = cluster
export const { ARGON2_PARAMS } = hasher
export const { REFRESH_GRANT_SQL, refreshDecision } = rotation
export const { createClient } = register
export const { CLIENT_READ_SQL } = clientAuth
export const { Keyring } = keyring
export const { loadKeyring } = keyLoading
export const { mintAccessToken, mintRefreshToken } = mint
export const { LIVE_PROFILE_SQL } = profile

/**
 * @typedef {import('../../services/auth/src/db/connect.js').Connection} Connection
 * @typedef {import('../../services/auth/src/keys/keyring.js').Keyring} KeyringInstance
 */
