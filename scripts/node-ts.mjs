// Both test lanes' loader (`make test` and `make test-fast`, `--import`ed
// into every test process by each workspace's tap config): Node runs the
// TypeScript itself (plain type stripping: the code is erasable TypeScript
// only, which tsconfig.json's erasableSyntaxOnly enforces), so no
// transpiler is loaded. Two things Node does not do alone:
// - a relative `./x.js` written in a .ts file names `./x.ts` (the NodeNext
//   convention tsc compiles by): resolved here, in-thread (module.registerHooks,
//   not an off-thread loader);
// - compiled code is cached on disk across the lane's processes
//   (module.enableCompileCache), so each test file does not compile the app again.
// docs/decisions.md, "A fast lane that is fast", has the measurements.
import { enableCompileCache, registerHooks } from 'node:module'
import { fileURLToPath } from 'node:url'

enableCompileCache(fileURLToPath(new URL('../node_modules/.cache/tessera-node-compile', import.meta.url)))

registerHooks({
  resolve (specifier, context, nextResolve) {
    if (specifier.startsWith('.') && specifier.endsWith('.js') && context.parentURL?.endsWith('.ts') === true) {
      try {
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context)
      } catch {
        // no such .ts: a real .js file, resolved as written below
      }
    }
    return nextResolve(specifier, context)
  }
})
