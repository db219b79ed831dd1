/**
 * The SimpleJWT reference stack (Django REST framework + SimpleJWT, sync
 * Gunicorn behind Nginx, its own Postgres) that `make bench-peer` measures
 * Tessera against. Its files live outside this repository
 * (../shared/peer-drf, or PEER_DRF_DIR); its README says how to install and
 * run it. This module checks that it can start, starts it in the
 * configuration issue 12 measured, mints its token pools with its own
 * `manage.py mint_tokens`, and stops only the parts it started.
 * @module
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PYTHON = '/usr/bin/python3'
const PYTHON_MODULES = ['django', 'rest_framework', 'rest_framework_simplejwt', 'psycopg2', 'argon2']
const BINARIES = ['/usr/bin/gunicorn', '/usr/sbin/nginx', '/usr/lib/postgresql/15/bin/postgres', '/usr/sbin/runuser']
const COMPONENTS = ['postgres', 'gunicorn', 'nginx']
const PEER_INSTALL = 'apt-get install -y python3-django python3-djangorestframework python3-djangorestframework-simplejwt python3-psycopg2 python3-argon2 gunicorn nginx postgresql wrk'
/** Issue 12's configuration: 3 sync workers, keys parsed once per worker. */
export const PEER_SETTINGS = { GUNICORN_WORKER_CLASS: 'sync', GUNICORN_WORKERS: '3', GUNICORN_THREADS: '1', PEER_JWT_KEY_MODE: 'object' }
const MODE = 'sync workers=3 threads=1 jwt_keys=object'
const PEER_URL = 'http://127.0.0.1:18080'

/**
 * Where the peer's files are: PEER_DRF_DIR, else ../shared/peer-drf beside
 * this checkout, else beside the main checkout when this is a git worktree.
 * @param {string} root @param {Record<string, string | undefined>} env
 */
export function locatePeer (root, env) {
  if (env.PEER_DRF_DIR) return path.resolve(env.PEER_DRF_DIR)
  const candidates = [path.resolve(root, '../shared/peer-drf')]
  try {
    const common = execFileSync('git', ['-C', root, 'rev-parse', '--path-format=absolute', '--git-common-dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    candidates.push(path.resolve(path.dirname(common), '../shared/peer-drf'))
  } catch {}
  return candidates.find((dir) => existsSync(path.join(dir, 'start.sh'))) ?? candidates[0]
}

/**
 * Why the peer cannot start here, in one line, or undefined when it can.
 * Nothing is started or installed.
 * @param {string} dir @param {string} runDir
 * @returns {Promise<string | undefined>}
 */
export async function peerUnavailable (dir, runDir) {
  if (!existsSync(path.join(dir, 'start.sh'))) return `no SimpleJWT stack at ${dir} (set PEER_DRF_DIR to the peer-drf folder)`
  if (process.platform !== 'linux') return 'the SimpleJWT stack runs on Linux (Debian 12) only'
  const missing = [...BINARIES, PYTHON].filter((f) => !existsSync(f))
  if (!hasOnPath('wrk')) missing.push('wrk')
  if (missing.length > 0) return `missing ${missing.join(', ')}; as root: ${PEER_INSTALL}`
  try {
    await run(PYTHON, ['-c', `import ${PYTHON_MODULES.join(', ')}`])
  } catch {
    return `${PYTHON} cannot import ${PYTHON_MODULES.join(', ')}; as root: ${PEER_INSTALL}`
  }
  if (process.getuid?.() !== 0) return 'start.sh runs its Postgres as the postgres user: run the comparison as root'
  const mode = readOptional(path.join(runDir, 'gunicorn.mode'))
  if (livePeerParts(runDir).includes('gunicorn') && mode !== MODE) {
    return `the SimpleJWT stack is already running as "${mode}", not "${MODE}"; stop it (${path.join(dir, 'stop.sh')} gunicorn) first`
  }
  return undefined
}

/** @param {string} name */
function hasOnPath (name) {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(path.join(d, name)))
}

/** @param {string} file */
function readOptional (file) {
  try { return readFileSync(file, 'utf8').trim() } catch { return undefined }
}

/**
 * The recorded parts of the stack that are alive: start.sh writes `name pid`
 * lines to RUN_DIR/pids.
 * @param {string} runDir @returns {string[]}
 */
function livePeerParts (runDir) {
  return peerPids(runDir).filter(({ pid }) => existsSync(`/proc/${pid}`)).map(({ name }) => name)
}

/** @param {string} runDir @returns {{ name: string, pid: number }[]} */
function peerPids (runDir) {
  const text = readOptional(path.join(runDir, 'pids')) ?? ''
  return text.split('\n').map((l) => l.trim().split(/\s+/)).filter((p) => p.length === 2 && COMPONENTS.includes(p[0])).map(([name, pid]) => ({ name, pid: Number(pid) }))
}

/**
 * @typedef {object} PeerStack
 * @property {string} url
 * @property {string} dir
 * @property {string} runDir
 * @property {string} mode what gunicorn.mode says it runs as
 * @property {string[]} started the parts this run started (and will stop)
 * @property {() => number[]} pids the root pids of its processes (Postgres, Gunicorn, Nginx)
 * @property {(kind: 'refresh' | 'access', count: number, out: string) => Promise<void>} mint tokens as its login issues them, one per line
 * @property {() => Promise<void>} stop stops the parts this run started, nothing else
 */

/**
 * Starts whatever part of the stack is not running (start.sh is idempotent)
 * in issue 12's configuration.
 * @param {string} dir @param {string} runDir @param {(line: string) => void} log
 * @returns {Promise<PeerStack>}
 */
export async function startPeer (dir, runDir, log) {
  const before = livePeerParts(runDir)
  const env = { ...process.env, ...PEER_SETTINGS, PEER_RUN_DIR: runDir }
  log(`starting the SimpleJWT stack (${dir}/start.sh; already running: ${before.join(', ') || 'nothing'})`)
  try {
    await run(path.join(dir, 'start.sh'), [], { env, cwd: dir, timeout: 600_000, maxBuffer: 16 * 2 ** 20 })
  } catch (err) {
    const e = /** @type {{ stdout?: string, stderr?: string, message: string }} */ (err)
    throw new Error(`the SimpleJWT stack did not start: ${(e.stderr || e.message).trim().split('\n').at(-1)}\n${e.stdout ?? ''}`)
  }
  const started = COMPONENTS.filter((c) => !before.includes(c))
  return {
    url: PEER_URL,
    dir,
    runDir,
    mode: readOptional(path.join(runDir, 'gunicorn.mode')) ?? 'unknown',
    started,
    pids: () => peerPids(runDir).map((p) => p.pid),
    mint: async (kind, count, out) => {
      await run(PYTHON, ['manage.py', 'mint_tokens', '--kind', kind, '--count', String(count), '--out', out], { env, cwd: dir, timeout: 600_000 })
    },
    stop: async () => {
      if (started.length === 0) return
      log(`stopping the parts of the SimpleJWT stack this run started: ${started.join(', ')}`)
      await run(path.join(dir, 'stop.sh'), [...started].reverse(), { env, cwd: dir, timeout: 120_000 })
    }
  }
}
