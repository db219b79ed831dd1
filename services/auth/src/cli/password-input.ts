/**
 * Reads a password from stdin: without echo at a terminal, the whole input
 * (less one trailing newline) from a pipe.
 * @module
 */
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { CliError } from './output.js'

async function readPiped (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

async function promptHidden (prompt: string): Promise<string> {
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() })
  // The interface turns the terminal's echo off; only then the prompt, or what is typed the moment it shows is echoed.
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true })
  process.stderr.write(prompt)
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question('', resolve)
      // The terminal is raw at the prompt, so Ctrl-C and Ctrl-D reach readline, not the shell: unanswered, the
      // process ran out of work and exited 0 having done nothing, which a script would read as success.
      rl.on('SIGINT', () => { reject(new CliError('interrupted at the password prompt; nothing was changed', 130)) })
      rl.on('close', () => { reject(new CliError('no password given: the input ended at the prompt; nothing was changed')) })
    })
  } finally {
    rl.close()
    process.stderr.write('\n')
  }
}

export async function readPassword (prompt = 'Password: '): Promise<string> {
  return process.stdin.isTTY ? await promptHidden(prompt) : await readPiped()
}
