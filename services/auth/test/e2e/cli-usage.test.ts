/**
 * The command line's own rules, over every command and action that `tessera
 * --help` lists: a flag one does not take is a usage error in one wording
 * (exit 2, `--X is not a flag of COMMAND ACTION` and the usage); `--help`
 * prints the usage as text on stdout and exits 0, whatever else is on the
 * line. Nothing here reaches a database: DATABASE_URL names a port nothing
 * listens on, so a command that ran anyway would fail with exit 1.
 */
import t from 'tap'
import { runCli } from '../helpers/server.js'

// About 100 CLI processes, each a cold Node start: on a loaded machine more than tap's 180 s.
t.setTimeout(600_000)

const env = { DATABASE_URL: 'postgres://127.0.0.1:1/none' }

/** Every command line, with the arguments it needs, so that only the flag under test is wrong. */
const EVERY_ACTION: string[][] = [
  ['migrate', 'up'], ['migrate', 'status'], ['migrate', 'down'],
  ['users', 'list'], ['users', 'create', 'bob'], ['users', 'show', 'bob'], ['users', 'disable', 'bob'], ['users', 'import', 'users.csv'],
  ['users', 'enable', 'bob'], ['users', 'unlock', 'bob'], ['users', 'delete', 'bob'], ['users', 'set-password', 'bob'], ['users', 'end-sessions', 'bob'],
  ['keys', 'list'], ['keys', 'rotate'], ['keys', 'revoke', 'kid'], ['keys', 'rewrap'],
  ['cleanup'],
  ['clients', 'create', 'x'], ['clients', 'list'], ['clients', 'show', 'x'], ['clients', 'rotate-secret', 'x'], ['clients', 'disable', 'x'], ['clients', 'enable', 'x'], ['clients', 'delete', 'x'],
  ['audit', 'tail'],
  ['db', 'start'], ['db', 'stop'], ['db', 'url'], ['db', 'roles']
]

/** What the help lists: each line's command and the lower-case words of its synopsis (its actions), bracketed flags and descriptions left out. */
function listedActions (help: string): string[] {
  return help.split('\n').flatMap((line) => {
    const [, command = '', synopsis = ''] = /^ {2}([a-z]+)(?: (.*?))?(?: {2,}.*)?$/.exec(line) ?? []
    if (command === '') return []
    const actions = synopsis.replace(/\[[^\]]*\]/g, '').split(/[\s|]+/).filter((word) => /^[a-z][a-z-]*$/.test(word))
    return actions.length === 0 ? [command] : actions.map((action) => `${command} ${action}`)
  })
}

t.test('the list below is every command and action the help names', async (t) => {
  const help = await runCli(['--help'], {})
  t.same(EVERY_ACTION.map((line) => line.slice(0, line[0] === 'cleanup' ? 1 : 2).join(' ')).sort(), [...new Set(listedActions(help.stdout))].sort())
})

t.test('a flag a command does not take: exit 2, one wording naming the command and action, then its usage', async (t) => {
  for (const line of EVERY_ACTION) {
    const named = line.slice(0, line[0] === 'cleanup' ? 1 : 2).join(' ')
    const refused = await runCli([...line, '--bogus'], env)
    t.equal(refused.code, 2, `${line.join(' ')} --bogus: exit 2`)
    t.match(refused.stderr, new RegExp(`^tessera: --bogus is not a flag of ${named}\\nusage: tessera ${line[0] ?? ''}[^\\n]*\\n$`), `${line.join(' ')} --bogus: the one wording`)
    t.equal(refused.stdout, '')
  }
  const whole = (await runCli(['--help'], {})).stdout
  for (const args of [['--bogus'], ['--json', '--bogus'], ['--version', '--bogus']]) {
    const refused = await runCli(args, env)
    t.same([refused.code, refused.stdout, refused.stderr], [2, '', `tessera: --bogus is not a flag of tessera\n${whole}`], `${args.join(' ')}: no command, the same wording, then the whole usage`)
  }
  for (const action of ['up', 'status']) {
    const refused = await runCli(['migrate', action, '--yes'], env)
    t.same([refused.code, refused.stdout], [2, ''], `migrate ${action} --yes: down's flag is not ${action}'s, refused before the database`)
    t.match(refused.stderr, new RegExp(`^tessera: --yes is not a flag of migrate ${action}\\nusage: tessera migrate `))
  }
  const before = await runCli(['users', '--json', 'list', '--bogus'], env)
  t.match(before.stderr, /^tessera: --bogus is not a flag of users list\n/, '--json before the action (users --json list) is read as after it')
  const runs = await runCli(['users', '--json', 'list'], env)
  t.same([runs.code, runs.stderr], [1, 'tessera: cannot reach the database: connect ECONNREFUSED 127.0.0.1:1\n'], 'and users --json list runs, as keys --json list does')
})

t.test('--help prints the usage as text on stdout, exit 0, whatever else is on the line', async (t) => {
  const whole = await runCli(['--help'], {})
  t.match(whole.stdout, /^usage: tessera <command> \[--json\]\n/)
  for (const args of [['--help', '--json'], ['--json', '--help'], ['--help', '--version'], ['--version', '--help'], ['-h', '--bogus']]) {
    const help = await runCli(args, env)
    t.same([help.code, help.stdout, help.stderr], [0, whole.stdout, ''], `${args.join(' ')}: the whole usage`)
  }
  const usages = new Map<string, string>()
  for (const line of EVERY_ACTION) {
    const command = line[0] ?? ''
    const own = usages.get(command) ?? (await runCli([command, '--help'], {})).stdout
    usages.set(command, own)
    t.match(own, new RegExp(`^usage: tessera <command> \\[--json\\]\\n\\n {2}${command} `), `${command} --help: its own lines`)
    for (const args of [[...line, '--help', '--json'], ['--dry-run', '--version', '--json', ...line, '--bogus', '-h']]) {
      const help = await runCli(args, env)
      t.same([help.code, help.stdout, help.stderr], [0, own, ''], `${args.join(' ')}: the command's usage, as text`)
    }
  }
  const unknown = await runCli(['frobnicate', '--help'], env)
  t.same([unknown.code, unknown.stdout, unknown.stderr], [2, '', 'tessera: unknown command "frobnicate" (see tessera --help)\n'], 'no command of that name: the usage error, help or not')
  // Names every JavaScript object has: looked up in a plain table they were a "command" (constructor ran and exited 0 having done nothing).
  for (const name of ['constructor', 'toString', '__proto__']) {
    const inherited = await runCli([name], env)
    t.same([inherited.code, inherited.stdout, inherited.stderr], [2, '', `tessera: unknown command "${name}" (see tessera --help)\n`], `${name}: no command either`)
  }
  const version = await runCli(['--version', 'keys', 'list'], env)
  t.same([version.code, version.stderr], [2, 'tessera: --version takes no command: tessera --version\n'], 'without --help, --version with a command is a usage error, not dropped while the command runs')
})
