import { onExit } from 'signal-exit'

const works = new Set<() => void>()
let registered = false

/** Newest first, as a stack unwinds: a later work may need what an earlier one removes (a Postgres's files in a directory removed at exit too). */
function runAll (): void {
  for (const work of [...works].reverse()) {
    works.delete(work)
    try { work() } catch {} // the others still run: the process is ending either way
  }
}

/**
 * Runs `work` when this process exits, also when a signal ends it: a Ctrl-C
 * (SIGINT to the terminal's group), a SIGTERM, or tap's timeout (the test
 * process sends itself SIGALRM). Such an end runs no teardowns, and what a
 * test started outside its own process stays: a Postgres pg_ctl started in a
 * session of its own, a child the signal did not reach, a directory in /tmp.
 * `work` runs synchronously, as the process ends. Returns the function that
 * drops it, for the teardown that did the same work.
 */
export function atExit (work: () => void): () => void {
  if (!registered) {
    registered = true
    onExit(runAll)
  }
  works.add(work)
  return () => { works.delete(work) }
}
