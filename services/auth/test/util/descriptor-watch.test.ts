/**
 * The descriptor watch (util/descriptor-watch.ts) in a process with
 * descriptors to spare says nothing. Out of them: test/e2e/descriptor-watch.test.ts.
 */
import t from 'tap'
import { watchDescriptors } from '../../src/util/descriptor-watch.js'

t.test('with descriptors to spare nothing is told, check after check', async (t) => {
  const told: string[] = []
  const watch = watchDescriptors({ everyMs: 10, exhausted: (code) => told.push(code), recovered: () => told.push('recovered') })
  t.teardown(() => { watch.stop() })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(told, [])
})
