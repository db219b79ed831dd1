#!/usr/bin/env node
// The operator CLI. It runs the compiled service: `npm run build` (or `make build`) first.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const entry = new URL('../dist/cli/main.js', import.meta.url)
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('tessera: not built yet; run `make build` (or `npm run build`) first\n')
  process.exit(1)
}
await import(entry.href)
