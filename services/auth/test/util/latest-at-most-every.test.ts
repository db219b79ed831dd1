/**
 * latestAtMostEvery (util/latest-at-most-every.ts) on timers the test fires
 * by hand: what is passed on, and when, for a value that changes often.
 */
import t from 'tap'
import { latestAtMostEvery, type Timers } from '../../src/util/latest-at-most-every.js'

/** Timers that run only when the test says the interval has ended. */
function handTimers (): Timers & { armed: () => number, fire: () => void } {
  let armed: Array<{ run: () => void }> = []
  return {
    set: (run) => { const timer = { run }; armed.push(timer); return timer },
    clear: (handle) => { armed = armed.filter((timer) => timer !== handle) },
    armed: () => armed.length,
    fire: () => { const due = armed; armed = []; for (const timer of due) timer.run() }
  }
}

/** A share announced at most once a second, on hand-fired timers, and what it passed on. */
function shareOnHandTimers (): { timers: ReturnType<typeof handTimers>, passed: number[], share: ReturnType<typeof latestAtMostEvery<number>> } {
  const timers = handTimers()
  const passed: number[] = []
  return { timers, passed, share: latestAtMostEvery<number>(1000, (value) => passed.push(value), timers) }
}

t.test('the first change goes at once; those within the interval go together at its end, as the newest', async (t) => {
  const { timers, passed, share } = shareOnHandTimers()
  share.offer(24)
  t.same(passed, [24], 'at once')
  for (const value of [25, 23, 26, 22, 25]) share.offer(value)
  t.same(passed, [24], 'five changes within the interval: nothing yet')
  timers.fire()
  t.same(passed, [24, 25], 'the newest, once, at the interval\'s end')
  t.equal(timers.armed(), 1, 'and another interval begins with it')
  timers.fire()
  t.equal(timers.armed(), 0, 'a quiet interval ends the wait')
  share.offer(21)
  t.same(passed, [24, 25, 21], 'so the next change goes at once again')
})

t.test('a value equal to the last passed on is not passed on again', async (t) => {
  const { timers, passed, share } = shareOnHandTimers()
  share.offer(24)
  share.offer(25)
  share.offer(24)
  timers.fire()
  t.same(passed, [24], 'back where it was by the interval\'s end: nothing to say')
  t.equal(timers.armed(), 0)
  share.offer(24)
  t.same(passed, [24], 'nor after a quiet interval')
})

t.test('stop drops what is still to be passed on', async (t) => {
  const { timers, passed, share } = shareOnHandTimers()
  share.offer(24)
  share.offer(30)
  share.stop()
  t.equal(timers.armed(), 0, 'its timer cleared')
  timers.fire()
  t.same(passed, [24])
})

t.test('on Node\'s own timers the newest value arrives once the interval ends', async (t) => {
  const passed: number[] = []
  const share = latestAtMostEvery<number>(20, (value) => passed.push(value))
  t.teardown(() => { share.stop() })
  share.offer(1)
  share.offer(2)
  share.offer(3)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(passed, [1, 3])
})
