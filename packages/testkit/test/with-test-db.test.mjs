/**
 * What scripts/with-test-db.mjs gives the run this test is part of: the
 * embedded test cluster in memory when /dev/shm has room, non-durable with a
 * bounded WAL, and the signing keys made ahead in a file only this user reads.
 */
import assert from 'node:assert/strict'
import { readFileSync, statSync, statfsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { testDatabaseEnv } from '../dist/index.js'

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url))

async function show (setting) {
  const client = new pg.Client({ connectionString: testDatabaseEnv().adminUrl })
  await client.connect()
  try { return (await client.query(`SHOW ${setting}`)).rows[0][setting] } finally { await client.end() }
}

function memoryFree () {
  try {
    const shm = statfsSync('/dev/shm')
    return shm.bavail * shm.bsize
  } catch {
    return 0
  }
}

test('the embedded test cluster runs in /dev/shm when it has 1 GiB free, else in .data/test; non-durable, its WAL bounded', async (t) => {
  if (process.env.DATABASE_URL !== undefined) return t.skip('the run uses the server DATABASE_URL names, not the embedded cluster')
  const dataDirectory = await show('data_directory')
  if (memoryFree() >= 1024 ** 3) {
    assert.match(dataDirectory, /^\/dev\/shm\/tessera-test-[0-9a-f]{16}\//)
  } else {
    assert.ok(dataDirectory.startsWith(join(repoRoot, '.data/test')), dataDirectory)
  }
  assert.equal(await show('fsync'), 'off')
  assert.equal(await show('max_wal_size'), '128MB')
})

test('the signing keys made ahead: real RSA keys in a file and a directory only this user can open', () => {
  const file = process.env.TESSERA_TEST_SIGNING_KEYS
  assert.ok(file !== undefined, 'TESSERA_TEST_SIGNING_KEYS is set')
  assert.equal(statSync(file).mode & 0o777, 0o600)
  assert.equal(statSync(dirname(file)).mode & 0o777, 0o700)
  const keys = JSON.parse(readFileSync(file, 'utf8'))
  assert.equal(keys.length, 12)
  assert.equal(new Set(keys.map((key) => key.kid)).size, 12, 'twelve different keys')
  for (const key of keys) assert.deepEqual([key.bits, key.publicJwk.kty, key.publicJwk.kid], [2048, 'RSA', key.kid])
})
