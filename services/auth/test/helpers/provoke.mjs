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
// - PROVOKE=kill-at-fork: the primary is killed (SIGKILL) as it forks its
//   first HTTP worker, before that worker has said it is online.
// - PROVOKE=worker-boot-fails: an HTTP worker's ask for its boot fails, so
//   its start fails.
import cluster from 'node:cluster'

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
if (process.env.PROVOKE === 'kill-at-fork' && cluster.isPrimary) {
  cluster.once('fork', () => { process.kill(process.pid, 'SIGKILL') })
}
if (process.env.PROVOKE === 'worker-boot-fails' && cluster.isWorker) {
  const send = process.send.bind(process)
  process.send = (message, ...rest) => {
    if (message?.kind === 'boot') throw Object.assign(new Error('provoked boot failure'), { password: SECRET })
    return send(message, ...rest)
  }
}
