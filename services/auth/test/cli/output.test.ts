/**
 * How every command answers, in process: what reaches the operator's
 * terminal of text a user chose (printable), how a command line it does not
 * take is refused (exit 2, with the usage), why a file could not be read
 * (real fs calls), and a listing written page by page, in JSON and as a
 * table, as the reader takes it. Through the CLI: test/e2e/cli.test.ts and
 * test/e2e/large-tables.test.ts.
 */
import { spawn } from 'node:child_process'
import { constants, promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { CliError, commandFlags, commandOutput, fileProblem, formatTable, parseCommandLine, printable, refuseForeignFlags, writeListing, type Listing, type Output } from '../../src/cli/output.js'

const USAGE = 'usage: tessera things list [--json]\n       tessera things show NAME'
const THINGS = { command: 'things', actions: ['list', 'show'], usage: USAGE }

t.test('printable: terminal escapes, control characters and bidirectional overrides are shown escaped, everything else as it is', async (t) => {
  t.equal(printable('\u001b]0;pwned\u0007\u001b[2J\u001b[31mroot\u001b[0m'), '\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31mroot\\u001b[0m', 'ESC (a title set, a screen cleared, a colour) and BEL: none reaches the terminal')
  t.equal(printable('bob\rroot\nfake line\ttab\u0000\b'), 'bob\\u000droot\\u000afake line\\u0009tab\\u0000\\u0008', 'CR (overwriting what came before), LF (a line of its own), TAB, NUL, BS')
  t.equal(printable('a\u007fb\u0080c\u009b31md\u009fe'), 'a\\u007fb\\u0080c\\u009b31md\\u009fe', 'DEL and C1, CSI (U+009B) among them')
  t.equal(printable('admin\u202egnp.exe\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069'), 'admin\\u202egnp.exe\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069', 'every bidirectional embedding, override and isolate (U+202A–E, U+2066–9)')
  const ordinary = 'Zoë Ångström-Øre, 山田太郎, Ελένη, مرحبا, שלום, 👩‍💻🇫🇷 a\\u001b b'
  t.equal(printable(ordinary), ordinary, 'accents, CJK, Greek, right-to-left letters (not overrides), emoji with their joiners, and a backslash: untouched')
  t.equal(printable(''), '')
})

t.test('parseCommandLine: what the command does not take is a CliError with exit code 2, its one line and then the usage', async (t) => {
  const options = { user: { type: 'string' }, json: { type: 'boolean' } } as const
  const refused = (args: string[], allowPositionals = true): CliError => {
    try {
      parseCommandLine({ args, strict: true, allowPositionals, options }, THINGS)
    } catch (err) {
      if (err instanceof CliError) return err
      throw err
    }
    throw new Error(`${args.join(' ')} was taken`)
  }
  for (const [args, first, allowPositionals] of [
    [['bob', '--dry-run'], /^--dry-run is not a flag of things$/, true],
    [['show', 'bob', '--dry-run'], /^--dry-run is not a flag of things show$/, true],
    [['list', '-x', '--user', 'bob'], /^-x is not a flag of things list$/, true],
    [['--dry-run'], /^--dry-run is not a flag of things$/, false],
    [['--user'], /^Option '--user <value>' argument missing$/, true],
    [['--user', '-x'], /^Option '--user' argument is ambiguous\. Did you forget .* use '--user=-XYZ'\.$/, true],
    [['bob'], /^Unexpected argument 'bob'/, false]
  ] as const) {
    const err = refused([...args], allowPositionals)
    t.equal(err.exitCode, 2, `${args.join(' ')}: exit code 2`)
    t.equal(err.code, 'ERR_CLI')
    t.ok(err.message.endsWith(`\n${USAGE}`), `${args.join(' ')}: the usage after`)
    const [line] = err.message.split('\n')
    t.equal(err.message, `${line ?? ''}\n${USAGE}`, `${args.join(' ')}: one line before it, Node's several lines joined`)
    t.match(line, first)
  }
  t.same(parseCommandLine({ args: ['bob', '--user', 'alice', '--json'], strict: true, allowPositionals: true, options }, THINGS), { values: { user: 'alice', json: true }, positionals: ['bob'] }, 'what it takes is parsed')
  t.equal(new CliError('no such user').exitCode, 1, 'a CliError of a command that ran exits 1')
})

t.test('refuseForeignFlags: a flag of another action is refused with exit code 2 and the usage; the action\'s own and --json pass', async (t) => {
  t.throws(() => { refuseForeignFlags(THINGS, 'list', { 'new-kek-file': 'kek.new' }, []) }, { name: 'CliError', exitCode: 2, message: `--new-kek-file is not a flag of things list\n${USAGE}` })
  t.throws(() => { refuseForeignFlags(THINGS, 'show', { json: true, name: 'x', 'dry-run': true }, ['name']) }, { exitCode: 2, message: `--dry-run is not a flag of things show\n${USAGE}` }, 'found among flags that pass')
  t.doesNotThrow(() => { refuseForeignFlags(THINGS, 'show', { 'new-kek-file': 'kek.new', json: true }, ['new-kek-file']) }, 'its own flag and --json')
  t.doesNotThrow(() => { refuseForeignFlags(THINGS, 'list', {}, []) }, 'no flag at all')
})

t.test('commandFlags: --json and the options given, positionals allowed; anything else exit code 2', async (t) => {
  t.same(commandFlags(['list', '--json'], THINGS), { json: true })
  t.same(commandFlags(['show', '--yes'], THINGS, { yes: { type: 'boolean' } }), { yes: true }, 'an option of the command\'s own')
  t.same(commandFlags(['list'], THINGS), {})
  t.throws(() => commandFlags(['show', '--yes'], THINGS), { name: 'CliError', exitCode: 2, message: `--yes is not a flag of things show\n${USAGE}` }, 'an option it was not given')
})

t.test('fileProblem: why a real fs call failed, in words', async (t) => {
  const dir = await fs.mkdtemp(path.join(tmpdir(), 'tessera-file-problem-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const file = path.join(dir, 'kek')
  await fs.writeFile(file, 'x', { mode: 0o600 })
  const failure = async (call: Promise<unknown>): Promise<unknown> => await call.then(() => { throw new Error('the call succeeded') }, (err: unknown) => err)

  t.equal(fileProblem(await failure(fs.readFile(path.join(dir, 'missing')))), 'no such file', 'ENOENT')
  t.equal(fileProblem(await failure(fs.readFile(path.join(file, 'inside')))), 'no such file (a part of its path is not a directory)', 'ENOTDIR')
  t.equal(fileProblem(await failure(fs.readFile(dir))), 'it is a directory', 'EISDIR')
  // Root reads a mode 000 file; execute permission it is refused without any x bit.
  t.equal(fileProblem(await failure(fs.access(file, constants.X_OK))), 'permission denied', 'EACCES')
  t.equal(fileProblem(await failure(fs.link(dir, path.join(dir, 'hard-link')))), 'permission denied', 'EPERM (a hard link to a directory, refused to root too)')
  t.equal(fileProblem(await failure(fs.mkdir(dir))), 'EEXIST', 'a code without words of its own: the code')
  t.equal(fileProblem(new Error('the KEK is 31 bytes')), 'the KEK is 31 bytes', 'no code: the message')
})

/** Stands `stream` in for process.stdout (which commandOutput reads at each call) until the test ends. */
function standInForStdout (t: Test, stream: Writable): void {
  const stdout = Object.getOwnPropertyDescriptor(process, 'stdout')
  if (stdout === undefined) throw new Error('process.stdout is not a property of process')
  Object.defineProperty(process, 'stdout', { value: stream, configurable: true, enumerable: true })
  t.teardown(() => { Object.defineProperty(process, 'stdout', stdout) })
}

/** A reader that takes everything at once; what it took, as one string. */
function capturedStdout (t: Test): { text: () => string } {
  const chunks: Buffer[] = []
  standInForStdout(t, new Writable({ write (chunk: Buffer, _encoding, done) { chunks.push(chunk); done() } }))
  return { text: () => Buffer.concat(chunks).toString('utf8') }
}

interface Person { name: string, role: string }

const LISTING: Listing<Person> = {
  widths: { name: 5, role: 4 },
  row: (p) => ({ name: p.name, role: p.role }),
  json: (p) => ({ name: p.name, role: p.role })
}

const PAGES: Person[][] = [
  [{ name: 'alice', role: 'admin' }, { name: 'bob', role: 'user' }],
  [{ name: 'carol', role: 'user' }],
  [{ name: 'dan', role: 'auditor' }, { name: 'eve', role: 'user' }]
]

/** `pages` as a source read one page at a time, counting the pages read. */
function paged<T> (pages: T[][]): { source: AsyncIterable<T[]>, read: () => number } {
  let read = 0
  return {
    source: (async function * () { for (const page of pages) { read++; yield page } })(),
    read: () => read
  }
}

t.test('commandOutput: result prints the human line, or with --json the data as one line of JSON that reads back as it was', async (t) => {
  const out = capturedStdout(t)
  commandOutput(false).result('created bob', { username: 'bob' })
  t.equal(out.text(), 'created bob\n')

  const json = capturedStdout(t)
  const hostile = { username: 'bob\u001b[2J\u009b31m\u007f\u202eevil\\u001b', n: 1 }
  commandOutput(true).result('ignored', hostile)
  const text = json.text()
  t.ok(text.endsWith('\n') && !text.slice(0, -1).includes('\n'), 'one line')
  t.notMatch(text.slice(0, -1), /\p{Cc}|[\u202a-\u202e\u2066-\u2069]/u, 'not one control character or bidirectional override, C1 and DEL (which JSON.stringify leaves) included')
  t.same(JSON.parse(text), hostile, 'the same data read back')
  t.equal(commandOutput(true).json, true)
  t.equal(commandOutput(false).json, false)
})

t.test('writeListing with --json: the pages make one JSON array, the very text result prints for them all', async (t) => {
  const out = capturedStdout(t)
  const everyone = PAGES.flat()
  await writeListing(commandOutput(true), paged(PAGES).source, LISTING)
  const listed = out.text()
  t.same(JSON.parse(listed), everyone, 'one document, every page in it in order')

  const whole = capturedStdout(t)
  commandOutput(true).result('', everyone)
  t.equal(listed, whole.text(), 'the same text, byte for byte')

  const hostile = capturedStdout(t)
  const mallory = { name: 'mallory\u009b2J\u202e', role: 'user' }
  await writeListing(commandOutput(true), paged([[mallory]]).source, LISTING)
  t.equal(hostile.text(), '[{"name":"mallory\\u009b2J\\u202e","role":"user"}]\n', 'cells escaped, still JSON')
})

t.test('writeListing as a table: a header, then every page\'s rows in the columns of the widths given, as formatTable lays them all out', async (t) => {
  const out = capturedStdout(t)
  await writeListing(commandOutput(false), paged(PAGES).source, LISTING)
  t.equal(out.text(), [
    'name   role',
    'alice  admin',
    'bob    user',
    'carol  user',
    'dan    auditor',
    'eve    user',
    ''
  ].join('\n'), 'a column at least its name\'s width, the last never padded')
  t.equal(out.text(), `${formatTable(PAGES.flat().map(LISTING.row))}\n`, 'with widths those of the widest cells: formatTable\'s text')

  const wider = capturedStdout(t)
  await writeListing(commandOutput(false), paged([[{ name: 'a', role: 'x' }], [{ name: 'bartholomew', role: 'y' }, { name: 'c\u001b[8m', role: 'z' }]]).source, LISTING)
  t.equal(wider.text(), 'name   role\na      x\nbartholomew  y\nc\\u001b[8m  z\n', 'a cell wider than its column (a row that came later) is not cut, only out of line; cells escaped')
})

t.test('writeListing of nothing: (none), or an empty JSON array', async (t) => {
  const table = capturedStdout(t)
  await writeListing(commandOutput(false), paged<Person>([]).source, LISTING)
  t.equal(table.text(), '(none)\n', 'as formatTable says it')
  t.equal(formatTable([]), '(none)')

  const json = capturedStdout(t)
  await writeListing(commandOutput(true), paged<Person>([]).source, LISTING)
  t.equal(json.text(), '[]\n')
  t.same(JSON.parse(json.text()), [])
})

t.test('writeListing of a source that yields empty pages: as if they were not there', async (t) => {
  const json = capturedStdout(t)
  await writeListing(commandOutput(true), paged([[], PAGES[0] ?? [], [], PAGES[1] ?? [], []]).source, LISTING)
  t.same(JSON.parse(json.text()), [...PAGES[0] ?? [], ...PAGES[1] ?? []], 'no stray comma before, between or after')

  const table = capturedStdout(t)
  await writeListing(commandOutput(false), paged<Person>([[], []]).source, LISTING)
  t.equal(table.text(), '(none)\n', 'only empty pages: (none), not a header over no rows')

  const nothing = capturedStdout(t)
  await writeListing(commandOutput(true), paged<Person>([[]]).source, LISTING)
  t.equal(nothing.text(), '[]\n')
})

t.test('writeListing reads the next page only once the reader has room for more', async (t) => {
  const chunks: string[] = []
  const held: Array<() => void> = []
  // A reader that keeps one small write at a time until let go: each page's write fills it.
  standInForStdout(t, new Writable({ highWaterMark: 8, write (chunk: Buffer, _encoding, done) { chunks.push(chunk.toString('utf8')); held.push(done) } }))
  const { source, read } = paged(PAGES)
  const listing = writeListing(commandOutput(false), source, LISTING)
  const turns = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve)) }

  await turns()
  t.equal(read(), 1, 'the first page written, the reader full: no second page read')
  t.equal(chunks.join(''), 'name   role\nalice  admin\nbob    user\n')
  for (let page = 2; page <= PAGES.length; page++) {
    held.shift()?.()
    await turns()
    t.equal(read(), page, `the reader took what it held: page ${page} read, none past it`)
  }
  held.shift()?.()
  await listing
  t.equal(chunks.join(''), 'name   role\nalice  admin\nbob    user\ncarol  user\ndan    auditor\neve    user\n', 'every page written, in order')
})

t.test('writeListing stops reading pages once the reader has gone (| head -c 1), from a source that never ends', async (t) => {
  const head = spawn('head', ['-c', '1'], { stdio: ['pipe', 'pipe', 'inherit'] })
  // As main.ts does for process.stdout: a reader gone is no error.
  head.stdin.on('error', (err: NodeJS.ErrnoException) => { if (err.code !== 'EPIPE') throw err })
  const shown: Buffer[] = []
  head.stdout.on('data', (chunk: Buffer) => shown.push(chunk))
  const exited = new Promise((resolve) => head.on('close', resolve))
  standInForStdout(t, head.stdin)

  let read = 0
  const endless = (async function * () { for (;;) { read++; yield [{ name: `user${read}`, role: 'user' }] } })()
  const output: Output = commandOutput(false)
  await writeListing(output, endless, LISTING)
  t.equal(await exited, 0, 'head took its byte and left')
  t.equal(Buffer.concat(shown).toString('utf8'), 'n')
  t.ok(read > 0, `${read} page(s) read, and then no more`)
  t.equal(await output.write('more'), false, 'a write once it has gone: false')
})
