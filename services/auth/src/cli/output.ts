/**
 * How every command answers: a short human line, or JSON with --json; a
 * failure is one line on stderr and a non-zero exit.
 * @module
 */
import { parseArgs, type ParseArgsConfig, type ParseArgsOptionsConfig } from 'node:util'
import { TesseraError } from '../errors.js'

export class CliError extends TesseraError {
  readonly exitCode: number
  readonly code = 'ERR_CLI'

  constructor (message: string, exitCode = 1) {
    super(message)
    this.exitCode = exitCode
  }
}

/**
 * How a command is typed, for its usage errors: its name, the actions it
 * takes as its first word ('list', 'rotate', … for keys; none for cleanup;
 * `users list` parses past its action and is named with it), and its usage.
 */
export interface CommandSyntax {
  command: string
  actions?: readonly string[]
  usage: string
}

/** A flag the command or its action does not take, in one wording for every command: told with the usage after it. */
function notAFlag (flag: string, syntax: CommandSyntax, action: string | undefined): CliError {
  const named = action !== undefined && syntax.actions?.includes(action) === true ? `${syntax.command} ${action}` : syntax.command
  return new CliError(`${flag} is not a flag of ${named}\n${syntax.usage}`, 2)
}

/**
 * A command's arguments, strictly: a flag it does not take is a usage error
 * (exit 2, with the usage) before anything runs, never ignored (`users
 * delete bob --dry-run` must not delete bob).
 */
export function parseCommandLine<T extends ParseArgsConfig> (config: T, syntax: CommandSyntax): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config)
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      // Node's own words differ with allowPositionals (a hint about '--' that is no help for a mistyped flag): found again leniently and told as ours.
      const lenient = parseArgs({ args: config.args, options: config.options, strict: false, allowPositionals: true, tokens: true })
      const known = config.options ?? {}
      const unknown = lenient.tokens.find((token) => token.kind === 'option' && !Object.hasOwn(known, token.name))
      if (unknown?.kind === 'option') throw notAFlag(unknown.rawName, syntax, lenient.positionals[0])
    }
    // Node words some of these over several lines (a value that starts with a dash): one line, then the usage.
    throw new CliError(`${(err as Error).message.replace(/\s*\n\s*/g, ' ')}\n${syntax.usage}`, 2)
  }
}

/**
 * Parsed together, each action's flags are every action's: one that is not
 * the action's own (`--json` is every action's) is a usage error, never
 * ignored (`keys rotate --new-kek-file F` must not rotate and drop F).
 */
export function refuseForeignFlags (syntax: CommandSyntax, action: string, values: Record<string, unknown>, own: readonly string[]): void {
  const foreign = Object.keys(values).find((flag) => flag !== 'json' && !own.includes(flag))
  if (foreign !== undefined) throw notAFlag(`--${foreign}`, syntax, action)
}

/** The flags of a command that takes no options of its own beyond these; `--json` is every command's. */
export function commandFlags (argv: string[], syntax: CommandSyntax, options: ParseArgsOptionsConfig = {}): Record<string, string | boolean | Array<string | boolean> | undefined> {
  return parseCommandLine({ args: argv, allowPositionals: true, strict: true, options: { json: { type: 'boolean' }, ...options } }, syntax).values
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  ENOTDIR: 'no such file (a part of its path is not a directory)',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory'
}

/** Why a file named on the command line could not be read, in words rather than an errno code. */
export function fileProblem (err: unknown): string {
  const { code, message } = err as NodeJS.ErrnoException
  return (code === undefined ? undefined : FILE_ERRORS[code]) ?? code ?? message
}

export interface Output {
  json: boolean
  result: (human: string, data: unknown) => void
  /**
   * Writes one part of a longer answer, resolving once the reader has room
   * for more; false once the reader has gone (`| head`): nothing more is
   * wanted, and a listing stops being read.
   */
  write: (text: string) => Promise<boolean>
}

/**
 * Control characters (C0, DEL, C1) and bidirectional overrides: stored text
 * (a username someone tried to log in with) must not drive the operator's
 * terminal, so it is shown escaped.
 */
const UNPRINTABLE = /\p{Cc}|[\u202a-\u202e\u2066-\u2069]/gu

export function printable (text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** JSON.stringify escapes C0 only; the same escapes stay valid JSON for the rest. */
const jsonText = (data: unknown): string => printable(JSON.stringify(data))

async function written (stream: NodeJS.WriteStream, text: string): Promise<boolean> {
  if (stream.destroyed) return false
  const taken = stream.write(text)
  // A pipe whose reader has gone fails the write at once (EPIPE, ignored in main.ts) and destroys the stream.
  if (stream.destroyed) return false
  if (taken) return true
  return await new Promise((resolve) => {
    const settle = (taken: boolean) => () => {
      stream.off('drain', drained)
      stream.off('close', closed)
      resolve(taken)
    }
    const drained = settle(true)
    const closed = settle(false)
    stream.once('drain', drained)
    stream.once('close', closed)
  })
}

export function commandOutput (json: boolean): Output {
  return {
    json,
    result: (human, data) => { process.stdout.write(json ? `${jsonText(data)}\n` : `${human}\n`) },
    write: async (text) => await written(process.stdout, text)
  }
}

function printableCells (row: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(row).map(([column, cell]) => [column, printable(cell)]))
}

/** One line of a table: each cell padded to its column's width, the last one not. */
function tableLine (cells: string[], widths: number[]): string {
  return cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
}

/** Renders rows as aligned columns for people, every cell printable. */
export function formatTable (rawRows: Array<Record<string, string>>): string {
  const rows = rawRows.map(printableCells)
  const first = rows[0]
  if (first === undefined) return '(none)'
  const columns = Object.keys(first)
  // A fold, not Math.max(...cells): spread as arguments, a column of some 120,000 rows (`users list`) overflowed the stack.
  const widths = columns.map((c) => rows.reduce((width, r) => Math.max(width, (r[c] ?? '').length), c.length))
  return [tableLine(columns, widths), ...rows.map((r) => tableLine(columns.map((c) => r[c] ?? ''), widths))].join('\n')
}

export interface Listing<T> {
  /** The columns in order, each with the width of its widest cell (at least its name's is used). */
  widths: Record<string, number>
  row: (item: T) => Record<string, string>
  json: (item: T) => unknown
}

/**
 * A list too long to hold, written page by page as it is read: the same
 * text `result` would print for it whole (formatTable's, or one JSON
 * array), given the widths of its columns up front, as its rows are not at
 * hand to measure. A cell wider than its column's width (a row that came
 * after the widths were taken) is not cut, only out of line. Once the
 * reader has gone no more pages are read.
 */
export async function writeListing<T> (out: Output, pages: AsyncIterable<T[]>, listing: Listing<T>): Promise<void> {
  const columns = Object.keys(listing.widths)
  const widths = columns.map((c) => Math.max(c.length, listing.widths[c] ?? 0))
  const rendered = (page: T[]): string[] => out.json
    ? page.map((item) => jsonText(listing.json(item)))
    : page.map((item) => { const row = printableCells(listing.row(item)); return tableLine(columns.map((c) => row[c] ?? ''), widths) })
  let started = false
  for await (const page of pages) {
    // An empty page (a source that paged past its last row) would be a stray comma in the JSON, or a header over no rows.
    if (page.length === 0) continue
    const opening = started ? (out.json ? ',' : '') : out.json ? '[' : `${tableLine(columns, widths)}\n`
    const lines = rendered(page)
    if (!await out.write(opening + (out.json ? lines.join(',') : lines.map((line) => `${line}\n`).join('')))) return
    started = true
  }
  await out.write(out.json ? `${started ? '' : '['}]\n` : started ? '' : '(none)\n')
}
