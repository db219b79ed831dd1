/**
 * `tessera keys list | rotate [--now] | revoke KID | rewrap --new-kek-file F`.
 * Each change is one transaction under KEYS_LOCK and NOTIFYs the running
 * instances, which pick it up within a second.
 * @module
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { Db } from '../db/database.js'
import { localKekFile, readKekFile, resolveKek } from '../keys/kek.js'
import { rowDefect } from '../keys/load.js'
import { finishedRewrap, finishInterruptedRewrap, stagedKekFile } from '../keys/local-kek.js'
import { revokeKey, UnknownKeyError } from '../keys/revoke-key.js'
import { rewrapKeys, SameKekError } from '../keys/rewrap.js'
import { rotateKeys } from '../keys/rotate.js'
import type { CommandContext } from './context.js'
import { CliError, fileProblem, parseCommandLine, formatTable, printable, refuseForeignFlags, type CommandSyntax } from './output.js'

const USAGE = 'usage: tessera keys list | rotate [--now] | revoke KID | rewrap --new-kek-file FILE'
const OPERATOR = { actor: 'operator', userAgent: 'tessera-cli' }

const iso = (date: Date | null): string | null => date?.toISOString() ?? null
/** Second precision is plenty for people; --json carries the full times. */
const short = (date: Date | null): string => date === null ? '-' : date.toISOString().slice(0, 19).replace('T', ' ')

async function list (ctx: CommandContext, db: Db): Promise<void> {
  const rows = await db.selectFrom('signing_keys')
    .select(['kid', 'state', 'bits', 'public_jwk', 'created_at', 'published_at', 'promoted_at', 'demoted_at', 'unpublished_at', 'private_erased_at', 'revoked_at', 'private_key_enc'])
    .orderBy('created_at', 'desc').execute()
  // The instances' own test, so a row they leave out (and only log) is marked
  // here too; a revoked row is never loaded, so never rejected.
  const rejected = new Map<string, string>()
  for (const r of rows) {
    const defect = r.state === 'revoked' ? undefined : await rowDefect(r)
    if (defect !== undefined) rejected.set(r.kid, defect)
  }
  const keys = rows.map((r) => ({
    kid: r.kid,
    state: r.state,
    bits: r.bits,
    created_at: r.created_at.toISOString(),
    published_at: r.published_at.toISOString(),
    promoted_at: iso(r.promoted_at),
    demoted_at: iso(r.demoted_at),
    unpublished_at: iso(r.unpublished_at),
    private_erased_at: iso(r.private_erased_at),
    revoked_at: iso(r.revoked_at),
    private_half: r.private_key_enc !== null,
    rejected: rejected.get(r.kid) ?? null
  }))
  const notes = [...rejected].map(([kid, reason]) => `\nrejected ${printable(kid)}: ${reason}; no instance publishes or uses it (see who wrote the row)`)
  ctx.out.result(formatTable(rows.map((r) => ({
    kid: r.kid,
    state: rejected.has(r.kid) ? `${r.state} (rejected)` : r.state,
    bits: String(r.bits),
    published: short(r.published_at),
    signed_from: short(r.promoted_at),
    signed_until: short(r.promoted_at === null ? null : r.demoted_at ?? (r.state === 'revoked' ? r.revoked_at : null)),
    unpublished: short(r.unpublished_at),
    private: r.private_key_enc !== null ? 'yes' : 'erased'
  }))) + notes.join(''), keys)
}

/**
 * How long the key that signs now had been in the JWKS, and, for a pending
 * key younger than the lead, the warning: a scheduled rotation makes its
 * `next` key a lead before its turn, so `--now` in that window promotes a
 * key that verifiers caching the JWKS may not have fetched yet, with the same
 * unknown-kid window as a new key.
 */
function promotedNote (publishedAt: Date | undefined, created: boolean, lead: number, now: Date): { seconds: number | null, note: string } {
  if (publishedAt === undefined) return { seconds: null, note: '' }
  const seconds = Math.max(0, Math.floor((now.getTime() - publishedAt.getTime()) / 1000))
  if (created || seconds >= lead) return { seconds, note: created ? ' (new)' : ' (it was the pending next key)' }
  return {
    seconds,
    note: ` (it was the pending next key, but published only ${seconds} s ago, under TESSERA_KEY_PUBLISH_LEAD's ${lead} s: ` +
      'a verifier whose cached JWKS predates it meets an unknown kid, as with a new key)'
  }
}

async function rotate (ctx: CommandContext, db: Db, kek: Buffer, now: boolean): Promise<void> {
  // A key that signs at once is published and promoted at the same instant; one that waits is stamped once it exists.
  const clock = await ctx.clock()
  const outcome = await rotateKeys(db, { kek, bits: ctx.config.keyBits, ...(now ? {} : { clock }) }, { immediate: now, clock, who: OPERATOR })
  const after = clock()
  const signsFrom = new Date(after.getTime() + ctx.config.keyPublishLead * 1000)
  const lead = ctx.config.keyPublishLead
  const promoted = promotedNote(outcome.promotedPublishedAt, outcome.created !== undefined, lead, after)
  const data = { created: outcome.created ?? null, promoted: outcome.promoted ?? null, demoted: outcome.demoted ?? null, pending: outcome.pending ?? null, published_for_s: promoted.seconds }
  if (outcome.pending !== undefined) {
    ctx.out.result(`key ${outcome.pending} is already published and waiting to sign; nothing changed (use --now to make it sign at once)`, data)
  } else if (outcome.promoted !== undefined) {
    ctx.out.result(`key ${outcome.promoted} signs now${promoted.note}` +
      `${outcome.demoted === undefined ? '' : `; ${outcome.demoted} is previous, still published for TESSERA_ACCESS_TTL + 60 s`}`, data)
  } else {
    // The instances promote by their own settings, which this command cannot read: the time is this command's reckoning.
    ctx.out.result(`created key ${outcome.created ?? ''}: published now, not signing; running instances make it sign after their TESSERA_KEY_PUBLISH_LEAD (${lead} s by this command's settings: at ${short(signsFrom)} UTC)`,
      { ...data, signs_from: signsFrom.toISOString() })
  }
}

async function revoke (ctx: CommandContext, db: Db, kek: Buffer, kid: string): Promise<void> {
  try {
    const clock = await ctx.clock()
    const outcome = await revokeKey(db, { kek, bits: ctx.config.keyBits }, { kid, clock, who: OPERATOR })
    const promoted = promotedNote(outcome.promotedPublishedAt, outcome.promotedCreated, ctx.config.keyPublishLead, clock())
    const data = { kid, was: outcome.was, sessions_ended: outcome.sessionsEnded, promoted: outcome.promoted ?? null, published_for_s: promoted.seconds }
    if (outcome.was === 'revoked') {
      ctx.out.result(`key ${kid} was already revoked; nothing changed`, data)
      return
    }
    ctx.out.result(`revoked key ${kid} (was ${outcome.was}): removed from the JWKS, private half erased, ${outcome.sessionsEnded} session(s) ended` +
      `${outcome.promoted === undefined ? '' : `; key ${outcome.promoted} signs now${promoted.note}`}`, data)
  } catch (err) {
    if (err instanceof UnknownKeyError) throw new CliError(err.message)
    throw err
  }
}

/**
 * With no TESSERA_KEK, the local KEK file is the KEK. Its replacement is
 * written beside it before the rewrap commits, and renamed over it once the
 * database holds the new ciphertexts: a data directory that cannot take it
 * (read-only, full) refuses the rewrap before any key changes, not after,
 * which would leave the keys sealed under a KEK no file holds.
 */
async function stageLocalKek (dataDir: string, kek: Buffer): Promise<{ file: string, staged: string }> {
  const file = localKekFile(dataDir)
  const staged = stagedKekFile(dataDir, process.pid)
  try {
    await fs.writeFile(staged, `${kek.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    throw new CliError(`cannot write the new KEK beside ${file}: ${fileProblem(err)}; nothing was re-encrypted`)
  }
  return { file, staged }
}

async function rewrap (ctx: CommandContext, db: Db, kek: Buffer, newKekFile: string): Promise<void> {
  let newKek: Buffer
  try {
    newKek = await readKekFile(path.resolve(ctx.workingDirectory, newKekFile))
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === undefined ? (err as Error).message : `${newKekFile}: ${fileProblem(err)}`
    throw new CliError(`cannot read the new KEK: ${why}`)
  }
  const local = ctx.config.kek === undefined ? await stageLocalKek(ctx.config.dataDir, newKek) : undefined
  let kids: string[]
  try {
    kids = await rewrapKeys(db, kek, newKek, OPERATOR)
  } catch (err) {
    if (local !== undefined) await fs.rm(local.staged, { force: true })
    if (err instanceof SameKekError) throw new CliError(err.message)
    throw err
  }
  if (local !== undefined) {
    try {
      await fs.rename(local.staged, local.file)
    } catch (err) {
      // A start in the moment between the commit and this rename finishes it itself (keys/local-kek.ts): done, not a failure.
      const renamedElsewhere = (err as NodeJS.ErrnoException).code === 'ENOENT' && (await readKekFile(local.file).catch(() => undefined))?.equals(newKek) === true
      if (!renamedElsewhere) throw new CliError(`the private keys are now sealed under the new KEK, but ${local.file} could not be replaced (${fileProblem(err)}): copy ${local.staged} over it before anything restarts`)
    }
  }
  // A file under /dev/ (compose pipes the new KEK in as /dev/stdin) is no place to fetch it from again.
  const from = newKekFile.startsWith('/dev/') ? '' : `, the contents of ${newKekFile}`
  ctx.out.result(`re-encrypted ${kids.length} private key(s) under the new KEK; ` +
    (local === undefined
      ? `now give every instance the new KEK${from} (TESSERA_KEK, or the file TESSERA_KEK_FILE names) and restart it`
      : `${local.file} now holds it; restart the server`), { rewrapped: kids, local_kek_file: local?.file ?? null })
}

/**
 * The KEK the keys are sealed under: the configured one, or the local file,
 * after finishing a rewrap killed between its commit and its rename (said on
 * stderr, as the step this command took before its own).
 */
async function operatorKek (ctx: CommandContext, db: Db): Promise<Buffer> {
  const kek = await resolveKek(ctx.config)
  if (ctx.config.kek !== undefined) return kek
  const local = await finishInterruptedRewrap(db, ctx.config.dataDir, kek)
  if (local.finished !== undefined) {
    process.stderr.write(`tessera: ${finishedRewrap(local.finished)}\n`)
  }
  return local.kek
}

/** Each action's own flags (`--json` is every command's). */
const ACTION_FLAGS: Record<string, readonly string[]> = {
  list: [],
  rotate: ['now'],
  revoke: [],
  rewrap: ['new-kek-file']
}
const SYNTAX: CommandSyntax = { command: 'keys', actions: Object.keys(ACTION_FLAGS), usage: USAGE }

/** A blank one (an unset shell variable: `keys revoke "$KID"`) is no argument either, never looked up as a kid or opened as a file. */
function requiredArgument (name: string, value: string | undefined): string {
  if (value === undefined) throw new CliError(USAGE, 2)
  if (value.trim() === '') throw new CliError(`${name}: must not be empty\n${USAGE}`, 2)
  return value
}

export async function keysCommand (ctx: CommandContext): Promise<void> {
  const parsed = parseCommandLine({
    args: ctx.argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, now: { type: 'boolean' }, 'new-kek-file': { type: 'string' } }
  }, SYNTAX)
  const [action, kid, ...extra] = parsed.positionals
  const own = action === undefined ? undefined : ACTION_FLAGS[action]
  if (own === undefined || extra.length > 0 || (kid !== undefined && action !== 'revoke')) throw new CliError(USAGE, 2)
  refuseForeignFlags(SYNTAX, action ?? '', parsed.values, own)
  // A missing argument is told before anything connects or reads the KEK, so it always exits 2.
  const argument = action === 'revoke' ? requiredArgument('KID', kid) : action === 'rewrap' ? requiredArgument('--new-kek-file', parsed.values['new-kek-file']) : ''
  const { db } = await ctx.connection()
  if (action === 'list') return await list(ctx, db)
  const kek = await operatorKek(ctx, db)
  if (action === 'rotate') return await rotate(ctx, db, kek, parsed.values.now === true)
  if (action === 'revoke') return await revoke(ctx, db, kek, argument)
  return await rewrap(ctx, db, kek, argument)
}
