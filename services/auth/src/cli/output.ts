/**
 * How every command answers: a short human line, or JSON with --json; a
 * failure is one line on stderr and a non-zero exit.
 * @module
 */
export class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) {
    super(message)
    this.name = 'CliError'
  }
}

export interface Output {
  json: boolean
  result: (human: string, data: unknown) => void
}

export function output (json: boolean, write: (text: string) => void = (t) => process.stdout.write(t)): Output {
  return {
    json,
    result: (human, data) => write(json ? `${JSON.stringify(data)}\n` : `${human}\n`)
  }
}

/** Renders rows as aligned columns for people. */
export function table (rows: Array<Record<string, string>>): string {
  const first = rows[0]
  if (first === undefined) return '(none)'
  const columns = Object.keys(first)
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(columns), ...rows.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n')
}
