// Loaded with `node --import` (NODE_OPTIONS, so an instance's workers and its
// hashing process load it too): makes a process do what a dependency or a
// bug would, on cue, for the tests of what reaches stdout and stderr
// (test/e2e/process-output.test.ts).
// - SIGWINCH (a signal Tessera does not handle and Node ignores by default):
//   two warnings, as a dependency emits them (process.emitWarning), one with
//   a code and a detail, one a DeprecationWarning.
// - SIGURG (ignored by default too): an error nothing catches, carrying a
//   secret-named property.
// - PROVOKE=warn-at-exit: the two warnings when the process has nothing left
//   to do (beforeExit: the end of a CLI command).
// - PROVOKE=throw-at-fork: the primary throws, uncaught, as it forks its
//   first HTTP worker (node:cluster emits 'fork' on the next tick), while
//   the instance starts.
// - PROVOKE=throw-at-fork-postgres-frozen: as throw-at-fork, after
//   stopping (SIGSTOP) the embedded Postgres under TESSERA_DATA_DIR, which
//   then cannot stop until it is continued (SIGCONT).
// - PROVOKE=kill-at-fork: the primary is killed (SIGKILL) as it forks its
//   first HTTP worker, before that worker has said it is online.
// - PROVOKE=throw-at-postgres-start: the primary throws, uncaught, just
//   after it runs `pg_ctl start` for the embedded Postgres, which goes on
//   starting the server (pg_ctl runs in a session of its own).
// - PROVOKE=sigint-at-postgres-start: as throw-at-postgres-start, a SIGINT
//   (Ctrl-C at `make run`) to the primary instead of a throw.
// - PROVOKE=sigterm-at-fork: the primary gets SIGTERM as it forks its first
//   HTTP worker, while the instance starts.
// - PROVOKE=worker-boot-fails: an HTTP worker's ask for its boot fails, so
//   its start fails.
import childProcess from 'node:child_process'
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import path from 'node:path'

const SECRET = 'provoked-secret-value'

function warn () {
  process.emitWarning('a warning as a dependency emits one', { code: 'TESSERA_TEST_WARNING', detail: 'with a detail' })
  process.emitWarning('an API a dependency still calls is deprecated', 'DeprecationWarning', 'DEP0999')
}

process.on('SIGWINCH', warn)
process.on('SIGURG', () => {
  setImmediate(() => { throw Object.assign(new Error('provoked'), { password: SECRET }) })
})
if (process.env.PROVOKE === 'warn-at-exit') process.once('beforeExit', warn)
if (process.env.PROVOKE === 'throw-at-fork' && cluster.isPrimary) {
  cluster.once('fork', () => { throw Object.assign(new Error('provoked at start'), { password: SECRET }) })
}
if (process.env.PROVOKE === 'throw-at-fork-postgres-frozen' && cluster.isPrimary) {
  cluster.once('fork', () => {
    const dataDir = process.env.TESSERA_DATA_DIR ?? ''
    let pgdata = path.join(dataDir, 'postgres')
    try { pgdata = readFileSync(path.join(dataDir, 'postgres-location'), 'utf8').trim() } catch {}
    process.kill(Number(readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGSTOP')
    throw Object.assign(new Error('provoked at start, Postgres frozen'), { password: SECRET })
  })
}
if (process.env.PROVOKE === 'kill-at-fork' && cluster.isPrimary) {
  cluster.once('fork', () => { process.kill(process.pid, 'SIGKILL') })
}
if (process.env.PROVOKE === 'sigterm-at-fork' && cluster.isPrimary) {
  cluster.once('fork', () => { process.kill(process.pid, 'SIGTERM') })
}
if ((process.env.PROVOKE === 'throw-at-postgres-start' || process.env.PROVOKE === 'sigint-at-postgres-start') && cluster.isPrimary) {
  const spawn = childProcess.spawn
  const provoked = process.env.PROVOKE === 'throw-at-postgres-start'
    ? () => { throw Object.assign(new Error('provoked while Postgres starts'), { password: SECRET }) }
    : () => { process.kill(process.pid, 'SIGINT') }
  childProcess.spawn = (file, args, ...rest) => {
    if (file.endsWith('/pg_ctl') && args?.[0] === 'start') setImmediate(provoked)
    return spawn(file, args, ...rest)
  }
  // embedded.ts imports spawn by name: its binding follows the module's export once synced.
  syncBuiltinESMExports()
}
if (process.env.PROVOKE === 'worker-boot-fails' && cluster.isWorker) {
  const send = process.send.bind(process)
  process.send = (message, ...rest) => {
    if (message?.kind === 'boot') throw Object.assign(new Error('provoked boot failure'), { password: SECRET })
    return send(message, ...rest)
  }
}
