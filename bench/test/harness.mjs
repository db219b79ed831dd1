/**
 * Runs bench/run.mjs as `make bench` does, for the tests.
 * @module
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const RUN = fileURLToPath(new URL('../run.mjs', import.meta.url))

/**
 * @param {string[]} args @param {Record<string, string>} env added to this process's
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string }>}
 */
export function harness (args, env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => { stdout += c.toString() })
    child.stderr.on('data', (c) => { stderr += c.toString() })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
