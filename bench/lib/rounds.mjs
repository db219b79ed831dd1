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
 * What every round adds to the best one: each round's rate, p99 and errors,
 * the worst rate, and errors and answers summed over the rounds.
 * @param {LoadResult[]} rounds
 */
export function allRounds (rounds) {
  /** @type {Record<string, number>} */
  const statuses = {}
  for (const r of rounds) for (const [code, n] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + n
  return {
    rounds: rounds.map((r) => ({ rps: r.rps, p99: r.p99, errors: r.errors, ...(r.cpu === undefined ? {} : { cpu: r.cpu }) })),
    low: Math.min(...rounds.map((r) => r.rps)),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    statuses
  }
}

/**
 * Whether a result meets every bound its target sets, with zero errors.
 * @param {Target} target @param {{ rps: number, p99: number, errors: number }} result @param {number} ratio of its ceiling
 */
export function meets (target, result, ratio) {
  return result.errors === 0 &&
    (target.ratio === undefined || ratio >= target.ratio) &&
    (target.rps === undefined || result.rps >= target.rps) &&
    (target.p99Ms === undefined || result.p99 <= target.p99Ms)
}

/** The target in words, for the tables. @param {Target} target */
export function targetText (target) {
  const parts = [
    ...(target.ratio === undefined ? [] : [`≥ ${Math.round(target.ratio * 100)} %`]),
    ...(target.rps === undefined ? [] : [`≥ ${target.rps.toLocaleString('en-US')}/s`]),
    ...(target.p99Ms === undefined ? [] : [`p99 ≤ ${target.p99Ms} ms`])
  ]
  return `${parts.join(', ')}${target.source === 'for reading' ? ' (for reading)' : ''}`
}
