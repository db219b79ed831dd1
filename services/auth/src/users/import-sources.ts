/**
 * Reading a user import file one record at a time, so memory stays flat
 * whatever the file's size: Django's `manage.py dumpdata auth.user` JSON (a
 * custom user model's too, if it has `username`, `password`, `is_active`),
 * streamed with stream-json, or a CSV `username,password_hash,disabled`
 * (header line required) streamed with csv-parse. Each record keeps its
 * position (record number in JSON, line number in CSV) for the report.
 * A file that cannot be read to its end throws ImportFileError.
 * @module
 */
import { Readable } from 'node:stream'
import { CsvError, parse as parseCsv } from 'csv-parse'
import chain from 'stream-chain'
import { parser } from 'stream-json'
import { streamArray } from 'stream-json/streamers/stream-array.js'
import { TesseraError } from '../errors.js'

export type ImportFormat = 'django' | 'csv'

export interface SourceRecord {
  /** 1-based: the record's index in a JSON array, or its line in a CSV file. */
  position: number
  username: unknown
  passwordHash: unknown
  disabled: boolean | string
  /** Set when the record cannot be read as a user at all. */
  problem?: string
}

/** The file as a whole cannot be read: not JSON/CSV, truncated, or not the expected shape. */
export class ImportFileError extends TesseraError {
  readonly code = 'ERR_IMPORT_FILE'

  constructor (message: string, cause?: unknown) {
    super(message, { cause })
  }
}

const CSV_HEADER = ['username', 'password_hash', 'disabled'] as const

function djangoRecord (position: number, value: unknown): SourceRecord {
  const fields = typeof value === 'object' && value !== null && 'fields' in value ? (value as { fields: unknown }).fields : undefined
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) {
    throw new ImportFileError(`record ${position} is not a dumpdata object with "fields"; is this the output of manage.py dumpdata auth.user?`)
  }
  const model = (value as { model?: unknown }).model
  if (typeof model === 'string' && !('username' in fields)) {
    // A full dumpdata, or a user model keyed by email: say so once per record, not "username: missing".
    return { position, username: undefined, passwordHash: undefined, disabled: false, problem: `"${model.slice(0, 80)}" has no username field: dump auth.user, or a user model with username, password and is_active` }
  }
  const { username, password, is_active: isActive } = fields as Record<string, unknown>
  return { position, username, passwordHash: password, disabled: isActive === undefined ? false : isActive === false ? true : (isActive === true ? false : String(isActive)) }
}

async function * djangoRecords (input: Readable): AsyncGenerator<SourceRecord> {
  const records = chain([input, parser(), streamArray()])
  let count = 0
  try {
    for await (const item of records as AsyncIterable<{ key: number, value: unknown }>) {
      count++
      yield djangoRecord(item.key + 1, item.value)
    }
  } catch (err) {
    if (err instanceof ImportFileError) throw err
    const reason = err instanceof Error ? err.message : String(err)
    // Nothing read: not JSON at all, or not a list, rather than a file cut short.
    if (count === 0) throw new ImportFileError(`the file is not a JSON array of records (${reason}); is this the output of manage.py dumpdata auth.user?`, err)
    throw new ImportFileError(`the file is not a complete JSON array of records (after record ${count}: ${reason}); is it truncated?`, err)
  }
}

function parseDisabled (text: string): boolean | string {
  const value = text.trim().toLowerCase()
  if (['', '0', 'false', 'no', 'f', 'n'].includes(value)) return false
  if (['1', 'true', 'yes', 't', 'y'].includes(value)) return true
  return text
}

/**
 * csv-parse's refusals in words of our own: its messages quote the cell it
 * stopped in ("value is …"), a password hash, or a password when a column
 * was exported wrong, and the CLI's error line goes to terminals and CI
 * logs, which no hash reaches otherwise (a row's problem names the reason,
 * never the hash). These are the ones the options above can raise.
 */
const CSV_PROBLEMS: Partial<Record<CsvError['code'], string>> = {
  INVALID_OPENING_QUOTE: 'a quote inside a field that does not start with one; quote the whole field and double the quotes inside it',
  CSV_INVALID_CLOSING_QUOTE: 'a quoted field goes on after its closing quote; double a quote inside a quoted field',
  CSV_QUOTE_NOT_CLOSED: 'a quoted field is not closed before the end of the file',
  CSV_MAX_RECORD_SIZE: 'a record is longer than 64 KiB'
}

async function * csvRecords (input: Readable): AsyncGenerator<SourceRecord> {
  const records = chain([input, parseCsv({ bom: true, relax_column_count: true, skip_empty_lines: true, info: true, max_record_size: 64 * 1024 })])
  let header = true
  try {
    for await (const { record, info } of records as AsyncIterable<{ record: string[], info: { lines: number } }>) {
      if (header) {
        if (record.length !== 3 || record.some((cell, i) => cell.trim().toLowerCase() !== CSV_HEADER[i])) {
          throw new ImportFileError(`line ${info.lines} is not the header ${CSV_HEADER.join(',')}; is this a CSV user export?`)
        }
        header = false
        continue
      }
      const [username, passwordHash, disabled] = record
      if (record.length !== 3) {
        const problem = `expected 3 columns (${CSV_HEADER.join(',')}), found ${record.length}; a hash holding commas (argon2) must be quoted`
        yield { position: info.lines, username, passwordHash: undefined, disabled: false, problem }
        continue
      }
      yield { position: info.lines, username, passwordHash, disabled: parseDisabled(disabled ?? '') }
    }
  } catch (err) {
    if (err instanceof ImportFileError) throw err
    if (!(err instanceof CsvError)) throw new ImportFileError(`the file is not valid CSV: ${err instanceof Error ? err.message : String(err)}`, err)
    const line = typeof err.lines === 'number' ? ` at line ${err.lines}` : ''
    // Not the parser's error as the cause: it holds the cell it stopped in.
    throw new ImportFileError(`the file is not valid CSV${line}: ${CSV_PROBLEMS[err.code] ?? `the parser refused it (${err.code})`}`)
  }
  if (header) throw new ImportFileError(`the file is empty; expected the header ${CSV_HEADER.join(',')}`)
}

/**
 * Why a file whose first bytes are these is not UTF-8 text. Windows
 * PowerShell's `>` writes a command's output as UTF-16 (the guide's
 * `dumpdata auth.user > users.json`, having first read it in the console's
 * code page, which may already have altered non-ASCII names, so it is not
 * decoded here), and `dumpdata -o users.json.gz` writes gzip. Read as UTF-8,
 * either would be "not a JSON array; is this the output of dumpdata?",
 * which it is.
 */
function notUtf8 (head: Buffer, format: ImportFormat): string | undefined {
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) {
    return `the file is UTF-16 (what Windows PowerShell's > writes), not UTF-8: ${format === 'csv' ? 'save it as UTF-8' : 'dump it again with python -X utf8 manage.py dumpdata auth.user -o users.json'}`
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'the file is gzip-compressed (what dumpdata -o users.json.gz writes): gunzip it first'
  return undefined
}

/** The input's bytes, once its first two are known not to be UTF-16's or gzip's. */
async function * utf8Bytes (input: AsyncIterable<Buffer>, format: ImportFormat): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0)
  for await (const chunk of input) {
    if (head === undefined) {
      yield chunk
      continue
    }
    head = Buffer.concat([head, chunk])
    if (head.length < 2) continue
    const problem = notUtf8(head, format)
    if (problem !== undefined) throw new ImportFileError(problem)
    yield head
    head = undefined
  }
  if (head !== undefined && head.length > 0) yield head
}

export function readImportFile (input: Readable, format: ImportFormat): AsyncGenerator<SourceRecord> {
  const text = Readable.from(utf8Bytes(input, format), { objectMode: false })
  return format === 'csv' ? csvRecords(text) : djangoRecords(text)
}
