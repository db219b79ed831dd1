/**
 * Everything the harness takes from Tessera's own code, in one place: the
 * built modules (services/auth/dist, so the benchmark runs exactly what `make
 * run` runs), each typed by the TypeScript source it was built from. Both come
 * from the `exports` of services/auth/package.json: `@tessera/auth/<file>.js`
 * is dist/<file>.js at run time and src/<file>.ts for the type checker. When a
 * service file moves, this is the one file to change, and `npm run lint`
 * (bench/tsconfig.json) fails here if a signature the harness relies on
 * changes.
 * @module
 */
// @ts-check
import { fileURLToPath } from 'node:url'

/** The server `make run` starts. */
export const SERVER_ENTRY = fileURLToPath(new URL('../../services/auth/dist/server.js', import.meta.url))
/** The sibling resource service. */
export const NOTES_ENTRY = fileURLToPath(new URL('../../services/notes/dist/server.js', import.meta.url))

export { connect } from '@tessera/auth/db/connect.js'
export { postgresClientConfig } from '@tessera/auth/db/tls.js'
export { startEmbeddedPostgres, stopEmbeddedPostgres } from '@tessera/auth/db/embedded.js'
export { migrateUp } from '@tessera/auth/db/migrate.js'
export { workerPoolSize } from '@tessera/auth/cluster/pool.js'
export { ARGON2_PARAMS } from '@tessera/auth/passwords/hasher.js'
export { REFRESH_GRANTS_SQL, RefreshDecisions } from '@tessera/auth/grants/refresh-decisions.js'
export { passwordGrant } from '@tessera/auth/grants/password.js'
export { backoffPolicy } from '@tessera/auth/passwords/login-throttle.js'
export { loadConfig } from '@tessera/auth/config.js'
export { hashingOverloaded } from '@tessera/auth/passwords/hasher.js'
export { createClient } from '@tessera/auth/clients/register.js'
export { CLIENT_READ_SQL } from '@tessera/auth/clients/authenticate.js'
export { ClientCache } from '@tessera/auth/clients/cache.js'
export { Keyring } from '@tessera/auth/keys/keyring.js'
export { loadKeyring } from '@tessera/auth/keys/load.js'
export { mintAccessToken, mintRefreshToken } from '@tessera/auth/tokens/mint.js'
export { LIVE_PROFILE_SQL, LIVE_PROFILE_STATEMENT } from '@tessera/auth/users/profile.js'
