/**
 * createWholeOnce against the real file system: of starts that race to make
 * one file, one makes it, and no start ever reads it empty or half written.
 */
import t from 'tap'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { createWholeOnce } from '../../src/util/data-dir.js'

t.test('starts racing to make one file: exactly one makes it, every one reads it whole, nothing is left beside it', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, 'postgres.password')
  const contents = Array.from({ length: 40 }, (_, i) => `secret-${i}-${'x'.repeat(4096)}\n`)
  const made = await Promise.all(contents.map(async (content) => {
    const created = await createWholeOnce(file, content)
    return { created, read: await fs.readFile(file, 'utf8') }
  }))
  t.equal(made.filter((m) => m.created).length, 1, 'one made it')
  const kept = await fs.readFile(file, 'utf8')
  t.ok(contents.includes(kept), 'whole, as one start wrote it')
  t.ok(made.every((m) => m.read === kept), 'every start read that same whole file, never an empty or partial one')
  t.equal((await fs.stat(file)).mode & 0o777, 0o600, 'readable by this user alone')
  t.same(await fs.readdir(dir), ['postgres.password'], 'nothing left beside it')
  t.equal(await createWholeOnce(file, 'later\n'), false, 'one already there is kept')
  t.equal(await fs.readFile(file, 'utf8'), kept)
})
