/**
 * `make lint` keeps the import graph of services/auth/src and
 * services/notes/src free of cycles. It checks the imports that exist at run
 * time; `import type` is not followed yet (tsPreCompilationDeps), because the
 * routes still take the Deps/App types from app.ts and the CLI commands their
 * helpers from cli/main.ts (issue 17 item 3 moves those types to a file of
 * their own; then set tsPreCompilationDeps to true).
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Dependencies flow routes -> domain -> db (docs/decisions.md): a cycle means a layer reaches back.',
      from: {},
      to: { circular: true }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: false,
    tsConfig: { fileName: 'services/auth/tsconfig.json' }
  }
}
