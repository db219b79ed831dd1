/**
 * `tessera users import FILE [--format django|csv] [--dry-run] [--json]`.
 * Prints the counts and each problem row with its position; exits 1 when
 * the file could not be read to its end (what full batches held before that
 * point is imported, but no renamed row: users/import.ts; a second run with
 * the whole file finishes the job), and when the database fails part-way
 * (the batches before are kept and audited as an incomplete import).
 * @module
 */
import { open } from 'node:fs/promises'
import { resolve } from 'node:path'
import { importUsers, ImportInterruptedError, positionName, recordImport, type ImportReport } from '../users/import.js'
import type { Db } from '../db/database.js'
import { databaseUnreachable } from '../errors.js'
import { readImportFile, type ImportFormat } from '../users/import-sources.js'
import type { CommandContext } from './context.js'
import { CliError, fileProblem, parseCommandLine, printable } from './output.js'

const USAGE = 'usage: tessera users import FILE [--format django|csv] [--dry-run] [--json]'

function formatOf (file: string, given: string | undefined): ImportFormat {
  if (given === 'django' || given === 'csv') return given
  if (given !== undefined) throw new CliError(`--format must be django or csv, not ${given}`, 2)
  return file.toLowerCase().endsWith('.csv') ? 'csv' : 'django'
}

function summary (report: ImportReport, file: string, format: ImportFormat): string {
  const verb = report.dryRun ? 'would create' : 'created'
  const lines = [
    `${file}: read ${report.read} record(s); ${verb} ${report.created} user(s) (${report.disabled} disabled, ${report.unusable} with no usable password); ` +
    `skipped ${report.existing} existing; ${report.problemCount} problem(s)${report.dryRun ? ' (dry run: nothing written)' : ''}`,
    ...(report.renamed > 0 ? [`  ${report.renamed} of them under their name after NFKC and lower-casing: a DRF service finds a token's user by exact name, and will not find these until they are so renamed in Django (docs/migrating-from-simplejwt.md, section 3):`] : []),
    ...report.renamedUsers.map((r) => `    ${positionName(format)} ${r.position}: ${r.django} as ${r.tessera}`),
    ...(report.renamed > report.renamedUsers.length ? [`    … and ${report.renamed - report.renamedUsers.length} more`] : []),
    ...report.problems.map((p) => `  ${positionName(format)} ${p.position}${p.username === undefined ? '' : ` (${p.username})`}: ${p.reason}`)
  ]
  if (report.problemCount > report.problems.length) lines.push(`  … and ${report.problemCount - report.problems.length} more`)
  return lines.map(printable).join('\n')
}

/**
 * What an import stopped part-way says, once the users it did create are
 * audited (the audit row says complete: false): those users are in, and a
 * second run with the same file skips them and imports the rest.
 */
async function interrupted (db: Db, err: ImportInterruptedError, format: ImportFormat): Promise<string> {
  const why = databaseUnreachable(err.cause) ?? err.message
  const created = `${err.report.created} user(s) created before it are kept`
  try {
    await recordImport(db, err.report, { format, complete: false })
  } catch {
    return `the import stopped after ${err.report.read} record(s): ${why}; ${created}, and no audit row could be written for them: run the same file again once the database is back, to import the rest and record it`
  }
  return `the import stopped after ${err.report.read} record(s): ${why}; ${created} (audited as users.imported, complete: false): run the same file again to import the rest`
}

export async function usersImportCommand (ctx: CommandContext): Promise<void> {
  const { values, positionals } = parseCommandLine({
    args: ctx.argv,
    allowPositionals: true,
    strict: true,
    options: { format: { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } }
  }, { command: 'users', actions: ['import'], usage: USAGE })
  const file = positionals[1]
  if (file === undefined || positionals.length > 2) throw new CliError(USAGE, 2)
  const format = formatOf(file, values.format)
  // Opened before the database, so a missing file fails fast and names itself.
  const handle = await open(resolve(ctx.workingDirectory, file)).catch((err: NodeJS.ErrnoException) => { throw new CliError(`cannot read ${file}: ${fileProblem(err)}`) })
  // A pipe (`<(manage.py dumpdata auth.user)`) is welcome; a directory opens, then fails on the first read.
  if ((await handle.stat()).isDirectory()) {
    await handle.close()
    throw new CliError(`cannot read ${file}: it is a directory`)
  }
  const { db } = await ctx.connection()
  const dryRun = values['dry-run'] === true
  const input = handle.createReadStream()
  let report: ImportReport
  try {
    report = await importUsers(db, readImportFile(input, format), {
      dryRun,
      now: (await ctx.clock())(),
      format,
      onWait: () => { process.stderr.write('tessera: another users import is running on this database; waiting for it to end\n') }
    })
  } catch (err) {
    if (!(err instanceof ImportInterruptedError) || dryRun || err.report.created === 0) throw err instanceof ImportInterruptedError ? err.cause : err
    throw new CliError(await interrupted(db, err, format))
  } finally {
    input.destroy()
  }
  // A run the file stopped before it created anyone changed nothing, so it
  // leaves no audit row (as an interrupted one that created no one): its
  // error alone says what happened. One that created users records them.
  if (!dryRun && (report.error === undefined || report.created > 0)) await recordImport(db, report, { format, complete: report.error === undefined })
  // A file not one record of which could be read has nothing to count: its error alone says what is wrong.
  if (report.error !== undefined && report.read === 0) throw new CliError(report.error)
  ctx.out.result(summary(report, file, format), {
    file,
    format,
    dry_run: dryRun,
    read: report.read,
    created: report.created,
    existing: report.existing,
    duplicates: report.duplicates,
    disabled: report.disabled,
    unusable: report.unusable,
    renamed: report.renamed,
    renamed_users: report.renamedUsers,
    problem_count: report.problemCount,
    problems: report.problems,
    error: report.error ?? null
  })
  if (report.error !== undefined) throw new CliError(report.error)
}
