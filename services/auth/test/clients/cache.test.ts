/**
 * ClientCache alone: when a row may be served from memory, and when a read
 * must not be kept. The database's side (the trigger, authenticateClient
 * through the cache) is in authenticate.test.ts; an instance's, in
 * e2e/client-cache.test.ts.
 */
import t from 'tap'
import { CLIENT_CACHE_TTL_MS, ClientCache, EVERY_CLIENT, type ClientRecord } from '../../src/clients/cache.js'

const record = (scopes: string[]): ClientRecord => ({
  confidential: true,
  grants: ['client_credentials'],
  scopes,
  resources: [],
  secretDigest: null,
  previousSecretDigest: null,
  previousSecretExpiresMs: null,
  disabled: false
})

/** A database stand-in that counts its reads and answers what the test set, when the test says. */
function rows (): { load: (id: string) => Promise<ClientRecord | undefined>, reads: () => number, set: (id: string, r: ClientRecord | undefined) => void } {
  const table = new Map<string, ClientRecord>()
  let reads = 0
  return {
    load: async (id) => { reads++; return table.get(id) },
    reads: () => reads,
    set: (id, r) => { if (r === undefined) table.delete(id); else table.set(id, r) }
  }
}

/** A cache whose feed is live, and a table holding svc with scopes ['a']. */
function liveWithSvc (nowMs?: () => number): { cache: ClientCache, db: ReturnType<typeof rows> } {
  const cache = new ClientCache(nowMs)
  const db = rows()
  db.set('svc', record(['a']))
  cache.feed({ live: true, epoch: 1 })
  return { cache, db }
}

t.test('without a live feed every read goes to the database', async (t) => {
  const cache = new ClientCache()
  const db = rows()
  db.set('svc', record(['a']))
  t.equal(cache.live, false)
  await cache.read('svc', db.load)
  await cache.read('svc', db.load)
  t.equal(db.reads(), 2)
})

t.test('with a live feed a row is read once, until it changes', async (t) => {
  const { cache, db } = liveWithSvc()
  t.same((await cache.read('svc', db.load))?.scopes, ['a'])
  db.set('svc', record(['b']))
  t.same((await cache.read('svc', db.load))?.scopes, ['a'], 'served from memory: the change was not heard')
  t.equal(db.reads(), 1)
  cache.changed('other')
  t.same((await cache.read('svc', db.load))?.scopes, ['a'], 'another client\'s change leaves it')
  cache.changed('svc')
  t.same((await cache.read('svc', db.load))?.scopes, ['b'], 'its own change forgets it')
  t.equal(db.reads(), 2)
  db.set('svc', record(['c']))
  cache.changed(EVERY_CLIENT)
  t.same((await cache.read('svc', db.load))?.scopes, ['c'], 'a truncate forgets every row')
})

t.test('an unknown client is never kept', async (t) => {
  const cache = new ClientCache()
  const db = rows()
  cache.feed({ live: true, epoch: 1 })
  t.equal(await cache.read('nobody', db.load), undefined)
  t.equal(await cache.read('nobody', db.load), undefined)
  t.equal(db.reads(), 2)
})

t.test('a lost feed forgets every row and reads the database until it is back', async (t) => {
  const { cache, db } = liveWithSvc()
  await cache.read('svc', db.load)
  db.set('svc', record(['b']))
  cache.feed({ live: false, epoch: 2 })
  t.same((await cache.read('svc', db.load))?.scopes, ['b'])
  t.same((await cache.read('svc', db.load))?.scopes, ['b'])
  t.equal(db.reads(), 3, 'nothing kept while lost')
  db.set('svc', record(['c']))
  cache.feed({ live: true, epoch: 3 })
  t.same((await cache.read('svc', db.load))?.scopes, ['c'], 'reconnected: what changed meanwhile is read afresh')
})

t.test('an older telling of the feed than one applied is ignored', async (t) => {
  const cache = new ClientCache()
  cache.feed({ live: false, epoch: 2 })
  cache.feed({ live: true, epoch: 1 })
  t.equal(cache.live, false, 'the boot answer (epoch 1, live) arrived after the loss (epoch 2)')
  cache.feed({ live: true, epoch: 3 })
  t.equal(cache.live, true)
})

t.test('a read in flight when a change is heard is answered but not kept', async (t) => {
  const cache = new ClientCache()
  cache.feed({ live: true, epoch: 1 })
  let reads = 0
  let answer: ((r: ClientRecord) => void) | undefined
  const slow = async (): Promise<ClientRecord> => { reads++; return await new Promise((resolve) => { answer = resolve }) }
  const inFlight = cache.read('svc', slow)
  cache.changed('svc')
  answer?.(record(['old']))
  t.same((await inFlight)?.scopes, ['old'], 'the caller gets what it read')
  const fresh = cache.read('svc', slow)
  answer?.(record(['new']))
  t.same((await fresh)?.scopes, ['new'], 'the next read goes to the database')
  t.same((await cache.read('svc', slow))?.scopes, ['new'], 'and that one is kept')
  t.equal(reads, 2)

  const lostMeanwhile = cache.read('other', slow)
  cache.feed({ live: false, epoch: 2 })
  cache.feed({ live: true, epoch: 3 })
  answer?.(record(['before the loss']))
  await lostMeanwhile
  const after = cache.read('other', slow)
  answer?.(record(['after']))
  t.same((await after)?.scopes, ['after'], 'a read across a lost feed is not kept either')
})

t.test('a row is kept no longer than the TTL, counted from when its read began', async (t) => {
  let now = 0
  const { cache, db } = liveWithSvc(() => now)
  await cache.read('svc', db.load)
  now = CLIENT_CACHE_TTL_MS - 1
  await cache.read('svc', db.load)
  t.equal(db.reads(), 1, 'served from memory just before the TTL')
  now = CLIENT_CACHE_TTL_MS
  await cache.read('svc', db.load)
  t.equal(db.reads(), 2, 'read again at the TTL')
})

t.test('past a thousand rows the cache starts over rather than grow', async (t) => {
  const cache = new ClientCache()
  const db = rows()
  for (let i = 0; i <= 1000; i++) db.set(`c${i}`, record([]))
  cache.feed({ live: true, epoch: 1 })
  for (let i = 0; i <= 1000; i++) await cache.read(`c${i}`, db.load)
  t.equal(db.reads(), 1001)
  await cache.read('c1000', db.load)
  t.equal(db.reads(), 1001, 'the newest is kept')
  await cache.read('c0', db.load)
  t.equal(db.reads(), 1002, 'the older ones went')
})
