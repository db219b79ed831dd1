/**
 * Runs bench/run.mjs as `make bench` does, for the tests.
 * @module
 */
import { runProcess } from '@tessera/testkit'
import { fileURLToPath } from 'node:url'

const RUN = fileURLToPath(new URL('../run.mjs', import.meta.url))

/**
 * @param {string[]} args @param {Record<string, string>} env added to this process's
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string }>}
 */
export async function harness (args, env) {
  return await runProcess(process.execPath, [RUN, ...args], { env: { ...process.env, ...env } })
}
