/**
 * Reads a password from stdin: without echo at a terminal, the whole input
 * (less one trailing newline) from a pipe.
 * @module
 */
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'

async function readPiped (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

async function promptHidden (prompt: string): Promise<string> {
  process.stderr.write(prompt)
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() })
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true })
  try {
    return await new Promise<string>((resolve) => rl.question('', resolve))
  } finally {
    rl.close()
    process.stderr.write('\n')
  }
}

export async function readPassword (prompt = 'Password: '): Promise<string> {
  return process.stdin.isTTY ? await promptHidden(prompt) : await readPiped()
}
