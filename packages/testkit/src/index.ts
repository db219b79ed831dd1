/**
 * The test toolkit of services/auth, services/notes and bench: one way to
 * spawn a process (stopped too should a signal end the test), find a free
 * port, make an HTTP request, capture logs, clone a test database and reach
 * it through a relay that can go silent.
 * It knows no test runner: callers register `stop` with tap's `t.teardown`
 * or node:test's `t.after` themselves (a database takes anything with a
 * `teardown`).
 * @module
 */
export { freePort } from './free-port.js'
export { request, trickleRequest, type Reply, type RequestOptions, type Trickled } from './http.js'
export { memorySink, type MemorySink } from './log-sink.js'
export { silenceableRelay, type SilentFrom } from './relay.js'
export { atExit } from './at-exit.js'
export { runProcess, spawnProcess, type ProcessResult, type SpawnOptions, type SpawnedProcess } from './process.js'
export {
  createTestDatabase, dropStaleTestDatabases, listTestDatabases, runOf, runPrefix, runTemplate, testDatabaseEnv, type Teardown
} from './test-database.js'
export { pruneOrphanTestClusters, recordClusterCheckout, TEST_CLUSTER_PREFIX } from './test-clusters.js'
