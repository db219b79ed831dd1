/**
 * `tessera users list`'s reads (users/manage.ts, listUserPages and
 * userListExtent) against a real Postgres: every user once, by username,
 * a page at a time, with the sessions that are live.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { Db } from '../../src/db/database.js'
import { listUserPages, userListExtent, type UserSummary } from '../../src/users/manage.js'
import { testConnection } from '../helpers/db.js'

const HOUR = 3_600_000

async function pagesOf (pages: AsyncIterable<UserSummary[]>): Promise<string[][]> {
  const names: string[][] = []
  for await (const page of pages) names.push(page.map((user) => user.username))
  return names
}

async function sessionOf (db: Db, userId: string, state: { expiresAt: Date, revoked?: boolean }): Promise<void> {
  const created = new Date(state.expiresAt.getTime() - 2 * HOUR)
  await db.insertInto('sessions').values({
    id: randomUUID(),
    user_id: userId,
    client_id: 'tessera',
    scope: 'read',
    created_at: created,
    last_used_at: created,
    expires_at: state.expiresAt,
    absolute_expires_at: state.expiresAt,
    ...(state.revoked === true ? { revoked_at: created, revoke_reason: 'revoke' } : {})
  }).execute()
}

t.test('users are read a page at a time after the last name of the page before: each once, in order', async (t) => {
  const { db } = await testConnection(t)
  // Inserted out of order, and with names whose order is not their insertion's.
  const names = ['eve', 'bob', 'dan', 'ann', 'cat']
  for (const username of names) await db.insertInto('users').values({ username, password_hash: 'x' }).execute()
  await db.updateTable('users').set({ disabled_at: new Date() }).where('username', 'in', ['bob', 'eve']).execute()
  const now = new Date()

  t.same(await pagesOf(listUserPages(db, { disabledOnly: false, now }, 2)), [['ann', 'bob'], ['cat', 'dan'], ['eve']], 'pages of 2, the last one short')
  t.same(await pagesOf(listUserPages(db, { disabledOnly: false, now }, 5)), [['ann', 'bob', 'cat', 'dan', 'eve']], 'a full last page, then nothing more')
  t.same(await pagesOf(listUserPages(db, { disabledOnly: true, now }, 1)), [['bob'], ['eve']], 'the disabled ones only')
  t.same(await userListExtent(db, { disabledOnly: false }), { longestUsername: 3, anyDisabled: true })

  await db.updateTable('users').set({ disabled_at: null }).execute()
  await db.updateTable('users').set({ username: 'a-much-longer-name' }).where('username', '=', 'cat').execute()
  t.same(await userListExtent(db, { disabledOnly: false }), { longestUsername: 'a-much-longer-name'.length, anyDisabled: false })
  t.same(await pagesOf(listUserPages(db, { disabledOnly: true, now }, 2)), [], 'no disabled user: no page at all')
  t.same(await userListExtent(db, { disabledOnly: true }), { longestUsername: 0, anyDisabled: false }, 'an empty list has no width of its own')
})

t.test('a user\'s live sessions are counted: not the revoked, not the expired, not another user\'s', async (t) => {
  const { db } = await testConnection(t)
  const ids = await db.insertInto('users').values([{ username: 'ann', password_hash: 'x' }, { username: 'bob', password_hash: 'x' }]).returning(['id', 'username']).execute()
  const [ann, bob] = [ids.find((u) => u.username === 'ann'), ids.find((u) => u.username === 'bob')]
  if (ann === undefined || bob === undefined) throw new Error('the users were not made')
  const now = new Date()
  await sessionOf(db, ann.id, { expiresAt: new Date(now.getTime() + HOUR) })
  await sessionOf(db, ann.id, { expiresAt: new Date(now.getTime() + HOUR) })
  await sessionOf(db, ann.id, { expiresAt: new Date(now.getTime() + HOUR), revoked: true })
  await sessionOf(db, ann.id, { expiresAt: new Date(now.getTime() - HOUR) })
  await sessionOf(db, bob.id, { expiresAt: new Date(now.getTime() - HOUR) })
  const listed: UserSummary[] = []
  for await (const page of listUserPages(db, { disabledOnly: false, now }, 1)) listed.push(...page)
  t.same(listed.map((user) => [user.username, user.liveSessions]), [['ann', 2], ['bob', 0]])
  const later: UserSummary[] = []
  for await (const page of listUserPages(db, { disabledOnly: false, now: new Date(now.getTime() + 2 * HOUR) })) later.push(...page)
  t.same(later.map((user) => [user.username, user.liveSessions]), [['ann', 0], ['bob', 0]], 'live as of the listing\'s time')
})
