import { spawn, type ChildProcess } from 'node:child_process'
import { atExit } from './at-exit.js'

export interface SpawnOptions {
  /** The whole environment of the child: nothing of this process's leaks in unless passed. */
  env?: Record<string, string | undefined>
  /** Written to the child's stdin, which is then closed. */
  stdin?: string
  cwd?: string
}

export interface SpawnedProcess {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** stdout and stderr interleaved as they arrived. */
  output: () => string
  /** The exit code (null when a signal ended it), as soon as the process itself has ended. */
  exited: Promise<number | null>
  /** The exit code once the output pipes are drained too (they stay open while a forked child holds them). */
  closed: Promise<number | null>
  /** Resolves with the first match of `pattern` in the output; rejects on exit or after `timeoutMs`. */
  waitFor: (pattern: RegExp, timeoutMs: number, what?: string) => Promise<RegExpExecArray>
  /** Sends `signal` unless it has exited, SIGKILL after `graceMs`, and waits for the exit. */
  stop: (signal?: NodeJS.Signals, graceMs?: number) => Promise<number | null>
}

export interface ProcessResult { code: number | null, stdout: string, stderr: string }

/**
 * Starts `command` with its output captured. The caller stops it (tap:
 * `t.teardown(() => proc.stop('SIGKILL'))`); one still running when this
 * process exits is sent SIGTERM (at-exit.ts).
 */
export function spawnProcess (command: string, args: string[], options: SpawnOptions = {}): SpawnedProcess {
  const child = spawn(command, args, { env: options.env ?? { PATH: process.env.PATH ?? '' }, cwd: options.cwd, stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let output = ''
  const listeners = new Set<() => void>()
  const take = (append: (text: string) => void) => (chunk: Buffer): void => {
    const text = chunk.toString()
    append(text)
    output += text
    for (const listener of listeners) listener()
  }
  child.stdout?.on('data', take((text) => { stdout += text }))
  child.stderr?.on('data', take((text) => { stderr += text }))
  child.stdin?.end(options.stdin)
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  // A test process ended by a signal (tap's timeout, a Ctrl-C) runs no
  // teardown: the child is told to end as it would be by one, and ends its
  // own children (a Tessera instance its workers and embedded Postgres).
  const dropStop = atExit(() => { if (running()) child.kill('SIGTERM') })
  child.once('exit', dropStop)

  const waitFor = async (pattern: RegExp, timeoutMs: number, what = `${command} ${pattern.source}`): Promise<RegExpExecArray> =>
    await new Promise((resolve, reject) => {
      const finish = (): void => { clearTimeout(timer); listeners.delete(check) }
      const check = (): void => {
        const match = pattern.exec(output)
        if (match !== null) { finish(); resolve(match) }
      }
      const timer = setTimeout(() => { finish(); reject(new Error(`${what}: not seen within ${timeoutMs} ms:\n${output}`)) }, timeoutMs)
      listeners.add(check)
      check()
      void exited.then(() => {
        check()
        if (listeners.has(check)) { finish(); reject(new Error(`${what}: the process exited first:\n${output}`)) }
      })
    })

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<number | null> => {
    if (running()) child.kill(signal)
    const timer = setTimeout(() => { if (running()) child.kill('SIGKILL') }, graceMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  return { child, stdout: () => stdout, stderr: () => stderr, output: () => output, exited, closed, waitFor, stop }
}

/** Runs `command` to its end and returns its exit code and output. */
export async function runProcess (command: string, args: string[], options: SpawnOptions = {}): Promise<ProcessResult> {
  const proc = spawnProcess(command, args, options)
  const code = await proc.closed
  return { code, stdout: proc.stdout(), stderr: proc.stderr() }
}
