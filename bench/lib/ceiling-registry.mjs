/**
 * Measures each ceiling once per run, on first use, in `rounds` short runs
 * (one at a time when a scenario alternates with them), and keeps the best:
 * other work on the machine can only slow a measurement down, never speed it
 * up, so the fastest round is the closest to what the machine allows. Every
 * round is kept, so the report shows the spread. A ceiling built from others
 * (refresh = 2 signatures + 1 rotation + 1 request) is not measured but
 * combined round by round (its round i from its parts' rounds i, measured
 * together), and the best and worst of those kept: the best of each part
 * taken from different moments would flatter it.
 * @module
 */

/**
 * @typedef {object} MeasuredCeiling
 * @property {string} what how it is measured, for the report
 * @property {(round: number, window: CpuWindow) => Promise<number | MeasuredRound>} measure one round (0, 1, …), per second, with what the machine's cores did during it when the ceiling can say
 * @property {number} [rounds] overrides the run's rounds (1 for a ceiling read from another)
 */

/**
 * @typedef {object} CombinedCeiling
 * @property {string} what
 * @property {string[]} from the ceilings it is built from
 * @property {(...rates: number[]) => number} combine their rates, in the order of `from`, to this one's
 */

/** @typedef {MeasuredCeiling | CombinedCeiling} CeilingDefinition */

/** @typedef {{ rate: number, cpu?: import('./proc-cpu.mjs').RunCpu }} MeasuredRound */

/**
 * The span a round's rate is timed over, for a ceiling measured in this
 * process that sets up first (keys, connections, rows): its cores are read
 * over that span alone. A round that never opens it is read whole.
 * @typedef {{ open: () => void, close: () => void }} CpuWindow
 */

/**
 * @typedef {object} CeilingResult
 * @property {number} rate the best round
 * @property {number} low the worst round
 * @property {number[]} rounds every round's rate, in order (combined: each round's parts combined)
 * @property {(import('./proc-cpu.mjs').RunCpu | undefined)[]} [cpu] each round's cores, for a measured ceiling that reports them
 * @property {string} what
 */

/**
 * @typedef {object} HarnessCpu how a round measured in the harness's own process gets its cores
 * @property {() => unknown} start a snapshot, taken just before the round
 * @property {(start: any) => import('./proc-cpu.mjs').RunCpu} since the cores used since that snapshot
 * @property {() => Promise<void>} [settle] waits, before any round, until what the last round started has finished (a login round's admitted hashes)
 */

/**
 * `cpu`, when given, measures what the machine did during each round of a
 * ceiling whose measure reports only its rate (one measured in this
 * process); a round that reports its own cores (a bare route's) keeps them.
 * @param {{ definitions: Record<string, CeilingDefinition>, rounds: number, log: (line: string) => void, cpu?: HarnessCpu }} options
 */
export function ceilingRegistry ({ definitions, rounds, log, cpu }) {
  /** @type {Map<string, Promise<MeasuredRound>[]>} each measured ceiling's rounds, in order, as they are asked for */
  const roundsOf = new Map()
  /** @type {Map<string, Promise<CeilingResult>>} */
  const results = new Map()

  /** @param {string} name */
  const definition = (name) => {
    const found = definitions[name]
    if (found === undefined) throw new Error(`no ceiling named ${name}`)
    return found
  }

  /**
   * Round `round` of a ceiling (of each of its parts, for a combined one),
   * measured once: a scenario measured in rounds asks for its ceiling's
   * round just before each of its own, so the two alternate.
   * @param {string} name @param {number} round
   */
  const measureRound = async (name, round) => {
    const found = definition(name)
    if ('from' in found) {
      for (const part of found.from) await measureRound(part, round)
      return
    }
    const all = roundsOf.get(name) ?? []
    roundsOf.set(name, all)
    // Rounds run in order: round 2 after rounds 0 and 1, whoever asks.
    for (let r = all.length; r <= Math.min(round, (found.rounds ?? rounds) - 1); r++) {
      const previous = all[r - 1] ?? Promise.resolve({ rate: 0 })
      all.push(previous.then(async () => {
        await cpu?.settle?.()
        log(`ceiling ${name}${rounds > 1 ? ` (round ${r + 1})` : ''}…`)
        let started = cpu?.start()
        /** @type {import('./proc-cpu.mjs').RunCpu | undefined} */
        let timed
        const window = { open: () => { started = cpu?.start() }, close: () => { timed = cpu?.since(started) } }
        const measuredRound = await found.measure(r, window)
        if (typeof measuredRound !== 'number') return measuredRound
        return cpu === undefined ? { rate: measuredRound } : { rate: measuredRound, cpu: timed ?? cpu.since(started) }
      }))
    }
    await Promise.all(all)
  }

  /** @param {string} name @returns {Promise<CeilingResult>} */
  const result = async (name) => {
    let pending = results.get(name)
    if (pending === undefined) {
      const found = definition(name)
      pending = 'from' in found ? combined(name, found) : measured(name, found)
      results.set(name, pending)
    }
    return await pending
  }

  /** @param {string} name @param {MeasuredCeiling} found @returns {Promise<CeilingResult>} */
  const measured = async (name, found) => {
    await measureRound(name, (found.rounds ?? rounds) - 1)
    const measuredRounds = await Promise.all(roundsOf.get(name) ?? [])
    const all = measuredRounds.map((r) => r.rate)
    const best = Math.max(...all)
    log(`ceiling ${name}: ${best}/s${all.length > 1 ? ` (rounds ${all.join(', ')})` : ''}`)
    const cpu = measuredRounds.some((r) => r.cpu !== undefined) ? { cpu: measuredRounds.map((r) => r.cpu) } : {}
    return { rate: best, low: Math.min(...all), rounds: all, ...cpu, what: found.what }
  }

  /**
   * The rates of the rounds measured so far; a combined ceiling's round i is
   * its parts' rounds i combined, what the machine allowed at that moment.
   * @param {string} name @returns {Promise<number[]>}
   */
  const rates = async (name) => {
    const found = definition(name)
    if (!('from' in found)) return (await Promise.all(roundsOf.get(name) ?? [])).map((r) => r.rate)
    const parts = await Promise.all(found.from.map(rates))
    const count = Math.min(...parts.map((p) => p.length))
    return Array.from({ length: count }, (_, i) => found.combine(...parts.map((p) => p[i] ?? 0)))
  }

  /** @param {string} name @param {CombinedCeiling} found @returns {Promise<CeilingResult>} */
  const combined = async (name, found) => {
    for (const part of found.from) await result(part)
    const all = await rates(name)
    return { rate: Math.max(...all), low: Math.min(...all), rounds: all, what: found.what }
  }

  /** @param {string} name @returns {Promise<number>} */
  const soFar = async (name) => {
    let all = await rates(name)
    if (all.length === 0) {
      await measureRound(name, 0)
      all = await rates(name)
    }
    return Math.max(...all)
  }

  return {
    /** The best of a ceiling's rounds measured so far (its first, if none is yet). @param {string} name */
    soFar,
    /** The best rate of a ceiling, every round measured (those not yet, now). @param {string} name */
    ceiling: async (name) => (await result(name)).rate,
    /** A ceiling's best and worst, every round measured. @param {string} name */
    result,
    /** Measures one round of a ceiling (of its parts, if combined) unless it was already. @param {string} name @param {number} round */
    round: measureRound,
    /** Whether a ceiling is defined here (openssl's is only where openssl is installed). @param {string} name */
    has: (name) => name in definitions,
    /** Every ceiling used so far, in the order first asked for. @returns {Promise<Record<string, CeilingResult>>} */
    all: async () => Object.fromEntries(await Promise.all([...results].map(async ([name, pending]) => [name, await pending])))
  }
}
