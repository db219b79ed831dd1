// @ts-check
/**
 * A scenario measured the way its ceiling is: in rounds, the best kept
 * (other work on the machine only ever slows a round down), every round
 * reported, and errors counted over all of them (one failed request in any
 * round is an error). Judging a result against its target is here too.
 * @module
 */

/**
 * @typedef {import('./load.mjs').LoadResult} LoadResult
 * @typedef {import('./scenarios.mjs').Target} Target
 */

/** The round with the highest rate (the lower p99 of two equal ones). @param {LoadResult[]} rounds @returns {LoadResult} */
export function bestRound (rounds) {
  const [first, ...rest] = rounds
  if (first === undefined) throw new Error('no round was run')
  return rest.reduce((best, r) => (r.rps > best.rps || (r.rps === best.rps && r.p99 < best.p99) ? r : best), first)
}

/**
 * What every round adds to the best one: each round's rate, p99 and errors
 * (and the p99 of its 503 answers, where it shed), the worst rate, and
 * errors and answers summed over the rounds.
 * @param {LoadResult[]} rounds
 */
export function allRounds (rounds) {
  /** @type {Record<string, number>} */
  const statuses = {}
  for (const r of rounds) for (const [code, n] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + n
  const worst = (/** @type {(r: LoadResult) => number | undefined} */ of) => {
    const values = rounds.map(of).filter((v) => v !== undefined)
    return values.length === 0 ? undefined : Math.max(...values)
  }
  const queueWaitMs = worst((r) => r.queueWaitMs)
  const shedP99 = worst((r) => r.shedP99)
  return {
    rounds: rounds.map((r) => ({ rps: r.rps, p99: r.p99, errors: r.errors, ...(r.shedP99 === undefined ? {} : { shedP99: r.shedP99 }), ...(r.cpu === undefined ? {} : { cpu: r.cpu }) })),
    low: Math.min(...rounds.map((r) => r.rps)),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    statuses,
    // What must hold in every round: the worst of them.
    ...(queueWaitMs === undefined ? {} : { queueWaitMs }),
    ...(shedP99 === undefined ? {} : { shedP99 })
  }
}

/**
 * Whether a result meets every bound its target sets, with zero errors. A
 * bound on the queue's waits or the shed answers' p99 is not met by a
 * result that did not measure them.
 * @param {Target} target @param {{ rps: number, p99: number, errors: number, queueWaitMs?: number, shedP99?: number }} result @param {number} ratio of its ceiling
 */
export function meets (target, result, ratio) {
  return result.errors === 0 &&
    (target.ratio === undefined || ratio >= target.ratio) &&
    (target.rps === undefined || result.rps >= target.rps) &&
    (target.p99Ms === undefined || result.p99 <= target.p99Ms) &&
    (target.queueWaitMs === undefined || (result.queueWaitMs ?? Infinity) <= target.queueWaitMs) &&
    (target.shedP99Ms === undefined || (result.shedP99 ?? Infinity) <= target.shedP99Ms)
}

/** The target in words, for the tables. @param {Target} target */
export function targetText (target) {
  const parts = [
    ...(target.ratio === undefined ? [] : [`≥ ${Math.round(target.ratio * 100)} %`]),
    ...(target.rps === undefined ? [] : [`≥ ${target.rps.toLocaleString('en-US')}/s`]),
    ...(target.p99Ms === undefined ? [] : [`p99 ≤ ${target.p99Ms} ms`]),
    ...(target.queueWaitMs === undefined ? [] : [`queue wait ≤ ${target.queueWaitMs} ms`]),
    ...(target.shedP99Ms === undefined ? [] : [`503 p99 ≤ ${target.shedP99Ms} ms`])
  ]
  return `${parts.join(', ')}${target.source === 'for reading' ? ' (for reading)' : ''}`
}
