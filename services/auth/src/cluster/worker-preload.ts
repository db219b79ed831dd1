/**
 * Loaded into every HTTP worker before Node runs anything else of it
 * (`--require`, set by cluster/primary.ts). Node's cluster code sends a
 * worker's first message ('online') to the primary while the process is
 * still starting, before server.ts is loaded; when the primary is already
 * gone (kill -9 while it forks), the write fails with EPIPE, emitted a tick
 * later as the worker's 'error' event, which nothing else listens to yet:
 * Node printed its stack on stderr, in the terminal or log the instance
 * shares. A write to the primary fails only once the channel is closed,
 * which the primary does only by exiting: the worker exits at once and
 * quietly, as Node's cluster code exits a worker whose primary disconnected.
 * It needs to run before the ESM loader does, hence `--require` (Node loads
 * this ES module synchronously there), not `--import`.
 * @module
 */
import cluster from 'node:cluster'

cluster.worker?.on('error', () => { process.exit(0) })
