/**
 * Spawns the real compiled server (dist/server.js) as its own process.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { atExit, runProcess, spawnProcess, type ProcessResult } from '@tessera/testkit'
import { linesOnceIn, within } from './http.js'
import { processIsGone } from '../../src/util/process-gone.js'
import type { HashingSettings } from '../../src/passwords/hashing-engine.js'

export const SERVER_ENTRY = fileURLToPath(new URL('../../dist/server.js', import.meta.url))
export const CLI_ENTRY = fileURLToPath(new URL('../../bin/tessera.js', import.meta.url))

export interface RunningServer {
  url: string
  process: ChildProcess
  output: () => string
  /**
   * The whole lines of the output that `selected` picks, once there are
   * `count` of them (a line still being written is left out). Every process
   * of an instance writes its lines through pino's asynchronous stream, so
   * a line logged while a request ran, and its request line (logged once
   * the answer has gone), may reach the output after the client has read
   * the answer: wait for them here, never read them at once. A process
   * writes its lines in order, so once a request's own line is in, every
   * line its process logged before it is too. Throws, naming both numbers,
   * when they are not all there within LOG_LINE_DEADLINE_MS.
   */
  logOf: (count: number, selected: (line: string) => boolean) => Promise<string[]>
  exited: Promise<number | null>
  /** The exit code once the output pipes are drained too, so that output() holds every line the instance wrote. */
  closed: Promise<number | null>
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** The request line of the request answered with `requestId` (its X-Request-Id). */
export const requestLineOf = (requestId: string | null | undefined) => (line: string): boolean =>
  line.includes(`"reqId":"${String(requestId)}"`) && line.includes('"msg":"request"')

/**
 * The settings of an instance whose signing keys change at second scale, for
 * the key lifecycle tests: a 1 s JWKS max-age and refresh grace, and no per-IP
 * limit (all their traffic comes from one address). The key timings
 * (publish lead, rotation, check interval) are each test's own.
 */
export function keyLifecycleEnv (databaseUrl: string, settings: Record<string, string>, kek = randomBytes(32).toString('base64url')): Record<string, string> {
  return { DATABASE_URL: databaseUrl, TESSERA_KEK: kek, TESSERA_JWKS_MAX_AGE: '1s', TESSERA_REFRESH_GRACE: '1s', TESSERA_RATE_LIMIT: '1000000', ...settings }
}

/**
 * `cgroup`: a cgroup directory the server is started in (a shell writes its
 * own pid to the cgroup's cgroup.procs, then execs node: one process, the
 * primary, whose forks stay in the cgroup).
 */
export async function startServer (t: Test, env: Record<string, string>, options: { timeoutMs?: number, cgroup?: string } = {}): Promise<RunningServer> {
  // The event-loop-delay ceiling off unless a test sets it, as in-process tests have it (helpers/app.ts):
  // several servers starting at once on a loaded 2-core machine see delays past the 1 s default, and shed a login the test expects answered.
  const [command, args] = options.cgroup === undefined
    ? [process.execPath, [SERVER_ENTRY]]
    : ['/bin/sh', ['-c', 'echo $$ > "$0" && exec "$@"', `${options.cgroup}/cgroup.procs`, process.execPath, SERVER_ENTRY]]
  const server = spawnProcess(command, args, { env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_LEVEL: 'info', TESSERA_MAX_EVENT_LOOP_DELAY_MS: '0', ...env } })
  t.teardown(async () => { await server.stop('SIGKILL') })
  const [, url = ''] = await server.waitFor(/"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/, options.timeoutMs ?? 60_000, 'the server')
  const logOf = async (count: number, selected: (line: string) => boolean): Promise<string[]> =>
    await linesOnceIn('the server\'s output', count, () => server.output().split('\n').slice(0, -1).filter(selected))
  return { url, process: server.child, output: server.output, logOf, exited: server.exited, closed: server.closed, stop: async (signal = 'SIGTERM') => await server.stop(signal) }
}

/** Every process of an instance: the primary and what it forked (HTTP workers, the hashing process), from /proc. */
export function instancePids (pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((tid) => whileAlive(() =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter((c) => c !== '').map(Number)))
  return [pid, ...children.flatMap((child) => whileAlive(() => instancePids(child)))]
}

/**
 * What `read` finds in /proc, or nothing once the process or thread it reads
 * is gone: workers die and are replaced while a test reads the instance, and
 * one can exit between listing it and reading its entries.
 */
function whileAlive (read: () => number[]): number[] {
  try {
    return read()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return []
    throw err
  }
}

/**
 * kill -9 of an instance's primary, as a crash or an OOM kill does, then wait
 * until every process of the instance is gone: its workers notice the lost
 * primary and end themselves, and nothing is left serving.
 */
export async function killInstance (server: RunningServer, limitMs = 5000): Promise<void> {
  const pids = instancePids(server.process.pid ?? 0)
  server.process.kill('SIGKILL')
  await server.exited
  const deadline = Date.now() + limitMs
  // Gone for the network means every thread has exited: a killed process's
  // main thread shows Z (zombie) while its other threads (libuv's, V8's) are
  // still exiting, and those hold its sockets open until the last one ends.
  // A request Nginx sent in that window is taken and then reset, a 502.
  const alive = (pid: number): boolean => {
    try {
      return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')) || readdirSync(`/proc/${pid}/task`).length > 1
    } catch {
      return false
    }
  }
  while (pids.some(alive)) {
    if (Date.now() > deadline) throw new Error(`processes of the instance outlived its primary: ${pids.filter(alive).join(', ')}`)
    await sleep(10)
  }
}

export type CliResult = ProcessResult

export async function runCli (args: string[], env: Record<string, string>, stdin = ''): Promise<CliResult> {
  return await runProcess(process.execPath, [CLI_ENTRY, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdin })
}

/** The pid of the postmaster running on `cluster`, if one runs. */
function postmasterOf (cluster: string): number | undefined {
  let pid = 0
  try { pid = Number(readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n')[0]) } catch {}
  // Not 0 or NaN: kill(0) would signal this test's own process group.
  return Number.isInteger(pid) && pid > 0 && !processIsGone(pid) ? pid : undefined
}

function removeClusterFiles (cluster: string): void {
  for (const leftover of [cluster, `${cluster}.owner`, `${cluster}.datadir`]) rmSync(leftover, { recursive: true, force: true })
}

/**
 * Removes a cluster root kept outside its data directory, with what lies
 * beside it (`.owner`, `.datadir`: db/embedded.ts). A server still running
 * on it is stopped first: it would write into the directory being removed,
 * which then stays (and its data directory, which `db stop` needs, may be gone).
 */
async function removeOutsideCluster (cluster: string): Promise<void> {
  const pid = postmasterOf(cluster)
  if (pid !== undefined) {
    try { process.kill(pid, 'SIGQUIT') } catch {}
    await within(30_000, async () => processIsGone(pid))
  }
  removeClusterFiles(cluster)
}

/** The embedded cluster's directory: under dataDir, or where dataDir's `postgres-location` says (as root, when the postgres user cannot enter dataDir). */
/** A running hashing process's settings: its last argument (passwords/hashing-engine.ts), read from /proc. */
export function hashingSettingsOf (pid: number): HashingSettings {
  return JSON.parse(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '').at(-1) ?? '{}') as HashingSettings
}

export function clusterDir (dataDir: string): string {
  try { return readFileSync(path.join(dataDir, 'postgres-location'), 'utf8').trim() } catch {}
  return path.join(dataDir, 'postgres')
}

/**
 * Stops a test's embedded Postgres and removes its data directory, and its
 * cluster where root kept it outside: a test leaves nothing in /var/tmp.
 */
async function removeDataDir (dataDir: string): Promise<void> {
  await runCli(['db', 'stop'], { TESSERA_DATA_DIR: dataDir })
  const cluster = clusterDir(dataDir)
  if (cluster !== path.join(dataDir, 'postgres')) await removeOutsideCluster(cluster)
  rmSync(dataDir, { recursive: true, force: true })
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4))

/**
 * removeOutsideCluster for a process a signal is ending (at-exit.ts), where
 * nothing asynchronous runs: the postmaster is sent SIGQUIT (Postgres's
 * immediate shutdown) and waited for in place, 10 s at most.
 */
function removeClusterNow (cluster: string): void {
  const pid = postmasterOf(cluster)
  if (pid !== undefined) {
    try { process.kill(pid, 'SIGQUIT') } catch {}
    const deadline = Date.now() + 10_000
    while (!processIsGone(pid) && Date.now() < deadline) Atomics.wait(PAUSE, 0, 0, 20)
  }
  removeClusterFiles(cluster)
}

/** removeDataDir for a process a signal is ending. */
function removeDataDirNow (dataDir: string): void {
  removeClusterNow(clusterDir(dataDir))
  rmSync(dataDir, { recursive: true, force: true })
}

/**
 * removeDataDir when the test ends, or when a signal ends this process first
 * (a Ctrl-C, tap's timeout), which runs no teardowns: the Postgres pg_ctl
 * started runs in a session of its own, which no signal to the test reaches.
 */
export function removeDataDirAtEnd (t: Test, dataDir: string): void {
  const dropNow = atExit(() => { removeDataDirNow(dataDir) })
  t.teardown(async () => { await removeDataDir(dataDir); dropNow() })
}

/** removeOutsideCluster when the test ends, or when a signal ends this process first. */
export function removeOutsideClusterAtEnd (t: Test, cluster: string): void {
  const dropNow = atExit(() => { removeClusterNow(cluster) })
  t.teardown(async () => { await removeOutsideCluster(cluster); dropNow() })
}
