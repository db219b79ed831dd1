/**
 * Real Tessera processes (services/auth/dist/server.js) on one database, each
 * on its own free loopback port. Several processes on one database is how
 * Tessera uses several cores: instances share nothing but Postgres.
 * @module
 */
import { freePort, spawnProcess } from '@tessera/testkit'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { waitIdle } from './proc-cpu.mjs'
import { NOTES_ENTRY, SERVER_ENTRY } from './service.mjs'

export { NOTES_ENTRY }

/**
 * @typedef {object} TesseraProcess
 * @property {string} url base URL, http://127.0.0.1:PORT
 * @property {number} pid
 * @property {() => string} output what the process printed (warnings and errors only at LOG_LEVEL=warn)
 * @property {() => Promise<number | null>} stop SIGTERM, wait for the drain and exit (a CPU profile is written then)
 */

/** @param {string} url @param {number} deadline */
async function waitReady (url, deadline) {
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url)
      if (res.ok) return
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`Tessera at ${url} was not ready in time`)
}

/**
 * @param {Record<string, string>} env the Tessera settings (DATABASE_URL, TESSERA_KEK, …)
 * @param {{ nodeArgs?: string[], logFile?: string, entry?: string, readyPath?: string }} [options] logFile receives what the process printed, once it has exited; entry and readyPath start another service (notes) the same way
 * @returns {Promise<TesseraProcess>}
 */
export async function startTessera (env, options = {}) {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const server = spawnProcess(process.execPath, [...(options.nodeArgs ?? []), options.entry ?? SERVER_ENTRY], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), ...env }
  })
  const output = server.output
  const stop = async () => {
    const code = await server.stop('SIGTERM', 30_000)
    if (options.logFile !== undefined) {
      await fs.mkdir(path.dirname(options.logFile), { recursive: true })
      await fs.writeFile(options.logFile, output())
    }
    return code
  }
  try {
    await Promise.race([
      (async () => {
        await waitReady(`${url}${options.readyPath ?? '/readyz'}`, Date.now() + 60_000)
        // /readyz answers once one HTTP worker listens; the others may still be loading their
        // modules and compiling their routes' schemas, work that would land in the first
        // measured run or in the profile. An idle instance uses almost nothing (timers).
        await waitIdle({ server: [server.child.pid ?? 0] }, { idle: 0.1, intervalMs: 300, timeoutMs: 15_000 })
      })(),
      server.exited.then((code) => { throw new Error(`${url} exited (${code}) before it was ready:\n${output()}`) })
    ])
  } catch (err) {
    await stop()
    throw err
  }
  return { url, pid: server.child.pid ?? 0, output, stop }
}
