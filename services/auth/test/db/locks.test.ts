import t from 'tap'
import * as locks from '../../src/db/locks.js'

t.test('every advisory lock id is distinct, so no two concerns wait on each other by accident', async (t) => {
  const ids = Object.values(locks)
  t.ok(ids.length >= 3, 'the keys, throttle-cleanup and session-cleanup locks are all here')
  t.equal(new Set(ids).size, ids.length)
  for (const id of ids) t.ok(Number.isSafeInteger(id) && id > 0, `${id} is a positive integer, as pg_advisory_lock(bigint) takes`)
})
