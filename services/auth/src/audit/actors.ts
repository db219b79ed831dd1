/**
 * The audit trail's own actors, apart from the trail's writer (record.ts)
 * so that the settings (config.ts) read them without loading the query
 * builder: the CLI's `--help` loads no more than it needs.
 * @module
 */

/** The actors the trail names that are no user and no client: the CLI's operator, the instances' own jobs, whoever failed to log in. */
export const NAMED_ACTORS: ReadonlySet<string> = new Set(['operator', 'system', 'anonymous'])
