/**
 * Spawns the real compiled server (dist/server.js) as its own process.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

export const SERVER_ENTRY = fileURLToPath(new URL('../../dist/server.js', import.meta.url))
export const CLI_ENTRY = fileURLToPath(new URL('../../bin/tessera.js', import.meta.url))

export interface RunningServer {
  url: string
  process: ChildProcess
  output: () => string
  exited: Promise<number | null>
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

export async function startServer (t: Test, env: Record<string, string>, options: { timeoutMs?: number } = {}): Promise<RunningServer> {
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), options.timeoutMs ?? 60_000)
    const check = (): void => {
      const match = /"address":"(http:\/\/[^"]+)".*"msg":"tessera is serving"/.exec(output)
      if (match?.[1] !== undefined) { clearTimeout(timer); resolve(match[1]) }
    }
    child.stdout.on('data', check)
    void exited.then(() => { clearTimeout(timer); reject(new Error(`server exited:\n${output}`)) })
  })
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    return await exited
  }
  t.teardown(async () => { await stop('SIGKILL') })
  return { url, process: child, output: () => output, exited, stop }
}

/** Every process of an instance: the primary and what it forked (HTTP workers, the hashing process), from /proc. */
export function instancePids (pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter((c) => c !== '').map(Number))
  return [pid, ...children.flatMap((child) => existsSync(`/proc/${child}`) ? instancePids(child) : [])]
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
  // A zombie (state Z) is gone for the network: it holds no sockets.
  const alive = (pid: number): boolean => {
    try {
      return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
    } catch {
      return false
    }
  }
  while (pids.some(alive)) {
    if (Date.now() > deadline) throw new Error(`processes of the instance outlived its primary: ${pids.filter(alive).join(', ')}`)
    await sleep(10)
  }
}

export interface CliResult { code: number | null, stdout: string, stderr: string }

export async function runCli (args: string[], env: Record<string, string>, stdin = ''): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  child.stdin.end(stdin)
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  return { code, stdout, stderr }
}
