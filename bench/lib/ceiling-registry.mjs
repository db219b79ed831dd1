/**
 * Measures each ceiling once per run, on first use, in `rounds` short runs,
 * and keeps the best: other work on the machine can only slow a measurement
 * down, never speed it up, so the fastest round is the closest to what the
 * machine allows. Every round is kept, so the report shows the spread. A
 * ceiling built from others (refresh = 2 signatures + 1 rotation + 1 request)
 * is not measured but combined: from the components' best rounds, and its
 * spread from their worst and best.
 * @module
 */

/**
 * @typedef {object} MeasuredCeiling
 * @property {string} what how it is measured, for the report
 * @property {(round: number) => Promise<number>} measure one round (0, 1, …), per second
 * @property {number} [rounds] overrides the run's rounds (1 for a ceiling read from another)
 */

/**
 * @typedef {object} CombinedCeiling
 * @property {string} what
 * @property {string[]} from the ceilings it is built from
 * @property {(...rates: number[]) => number} combine their rates, in the order of `from`, to this one's
 */

/** @typedef {MeasuredCeiling | CombinedCeiling} CeilingDefinition */

/**
 * @typedef {object} CeilingResult
 * @property {number} rate the best round (combined: from the components' best)
 * @property {number} low the worst round (combined: from the components' worst)
 * @property {number[]} rounds every round's rate, in order (combined: none)
 * @property {string} what
 */

/**
 * @param {{ definitions: Record<string, CeilingDefinition>, rounds: number, log: (line: string) => void }} options
 */
export function ceilingRegistry ({ definitions, rounds, log }) {
  /** @type {Map<string, Promise<CeilingResult>>} */
  const measured = new Map()

  /** @param {string} name @returns {Promise<CeilingResult>} */
  const result = async (name) => {
    let pending = measured.get(name)
    if (pending === undefined) {
      const definition = definitions[name]
      if (definition === undefined) throw new Error(`no ceiling named ${name}`)
      pending = 'from' in definition ? combined(definition) : measure(name, definition)
      measured.set(name, pending)
    }
    return await pending
  }

  /** @param {string} name @param {MeasuredCeiling} definition @returns {Promise<CeilingResult>} */
  const measure = async (name, definition) => {
    const all = []
    for (let round = 0; round < (definition.rounds ?? rounds); round++) {
      log(`ceiling ${name}${rounds > 1 ? ` (round ${round + 1})` : ''}…`)
      all.push(await definition.measure(round))
    }
    const best = Math.max(...all)
    log(`ceiling ${name}: ${best}/s${all.length > 1 ? ` (rounds ${all.join(', ')})` : ''}`)
    return { rate: best, low: Math.min(...all), rounds: all, what: definition.what }
  }

  /** @param {CombinedCeiling} definition @returns {Promise<CeilingResult>} */
  const combined = async (definition) => {
    const parts = []
    for (const name of definition.from) parts.push(await result(name))
    return {
      rate: definition.combine(...parts.map((p) => p.rate)),
      low: definition.combine(...parts.map((p) => p.low)),
      rounds: [],
      what: definition.what
    }
  }

  return {
    /** The best rate of a ceiling, measured on first use. @param {string} name */
    ceiling: async (name) => (await result(name)).rate,
    /** Whether a ceiling is defined here (openssl's is only where openssl is installed). @param {string} name */
    has: (name) => name in definitions,
    /** Every ceiling used so far, in the order first asked for. @returns {Promise<Record<string, CeilingResult>>} */
    all: async () => Object.fromEntries(await Promise.all([...measured].map(async ([name, pending]) => [name, await pending])))
  }
}

/**
 * Memoizes `measure` per round, for two ceilings read from one measurement
 * (jose and node:crypto signing come from one call).
 * @template T @param {(round: number) => Promise<T>} measure @returns {(round: number) => Promise<T>}
 */
export function perRound (measure) {
  /** @type {Map<number, Promise<T>>} */
  const memo = new Map()
  return async (round) => {
    let pending = memo.get(round)
    if (pending === undefined) {
      pending = measure(round)
      memo.set(round, pending)
    }
    return await pending
  }
}
