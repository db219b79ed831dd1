// Loaded with `node --import` (NODE_OPTIONS, so an instance's workers and its
// hashing process load it too): makes a process do what a dependency or a
// bug would, on cue, for the tests of what reaches stdout and stderr
// (test/e2e/process-output.test.ts).
// - SIGWINCH (a signal Tessera does not handle and Node ignores by default):
//   two warnings, as a dependency emits them (process.emitWarning), one with
//   a code and a detail, one a DeprecationWarning.
// - PROVOKE=warn-at-exit: the two warnings when the process has nothing left
//   to do (beforeExit: the end of a CLI command).

function warn () {
  process.emitWarning('a warning as a dependency emits one', { code: 'TESSERA_TEST_WARNING', detail: 'with a detail' })
  process.emitWarning('an API a dependency still calls is deprecated', 'DeprecationWarning', 'DEP0999')
}

process.on('SIGWINCH', warn)
if (process.env.PROVOKE === 'warn-at-exit') process.once('beforeExit', warn)
