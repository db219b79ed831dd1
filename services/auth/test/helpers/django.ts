/**
 * Django's own code as the oracle of the import tests: django_oracle.py runs
 * make_password and manage.py with Debian's python3-django.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Test } from 'tap'

const run = promisify(execFile)
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const ORACLE = fileURLToPath(new URL('./django_oracle.py', import.meta.url))

/** The oracle's JSON answer to one command. */
export async function djangoOracle (...args: string[]): Promise<unknown> {
  const { stdout } = await run(PYTHON, [ORACLE, ...args], { maxBuffer: 64 * 1024 * 1024 })
  return JSON.parse(stdout)
}

/** A directory of the test's own, removed when it ends. */
export async function scratchDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-django-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}
