/**
 * `make lint` keeps the import graph of services/auth/src and
 * services/notes/src as docs/decisions.md draws it: no cycles, between
 * modules or between folders, and in auth dependencies flow one way,
 * routes -> domain -> db. Type-only imports count
 * (tsPreCompilationDeps): a layer that reaches back for a type is still
 * reaching back.
 * @type {import('dependency-cruiser').IConfiguration}
 */
const AUTH = '^services/auth/src/'
// What serves HTTP or runs processes (the cluster, the jobs, the metrics they merge): the layer above the domain.
const ENTRY = `${AUTH}(routes/|http/|cli/|cluster/|metrics/|app\\.ts|server\\.ts|jobs\\.ts)`
// The domain: one folder per concern, knowing nothing of HTTP.
const DOMAIN = `${AUTH}(audit|clients|grants|keys|passwords|sessions|tokens|users)/`

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Dependencies flow routes -> domain -> db (docs/decisions.md): a cycle means a layer reaches back.',
      from: {},
      to: { circular: true }
    },
    {
      name: 'no-folder-cycle',
      severity: 'error',
      comment: 'Folders import one another one way too: two folders can reach back to each other with no module cycle (clients/end.ts -> sessions/, sessions/ -> clients/ was one). docs/decisions.md, "Import cycles and layers".',
      scope: 'folder',
      from: { path: '^services/(auth|notes)/src/' },
      to: { circular: true }
    },
    {
      name: 'subfolders-stay-inside',
      severity: 'error',
      comment: 'no-folder-cycle counts routes/oauth as a folder of its own: an import from another folder into a subfolder could let a cycle through routes/ pass unseen. Other folders import a folder at its top; only the top-level files (app.ts) reach in.',
      from: { path: '^services/(auth|notes)/src/([^/]+)/' },
      to: { path: '^services/$1/src/[^/]+/[^/]+/', pathNot: '^services/$1/src/$2/' }
    },
    {
      name: 'domain-not-up',
      severity: 'error',
      comment: 'Domain code is called by routes and the CLI; it never imports them.',
      from: { path: DOMAIN },
      to: { path: ENTRY }
    },
    {
      name: 'domain-knows-no-fastify',
      severity: 'error',
      comment: 'Domain code knows nothing of Fastify: routes parse and shape, the domain decides.',
      from: { path: DOMAIN },
      to: { path: 'node_modules/(fastify|@fastify)/' }
    },
    {
      name: 'db-is-the-bottom',
      severity: 'error',
      comment: 'db/ is below every domain folder and every entry point, and below config.ts, which imports audit/.',
      from: { path: `${AUTH}db/` },
      to: { path: [DOMAIN, ENTRY, `${AUTH}(cluster|metrics)/`, `${AUTH}config\\.ts`] }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'services/auth/tsconfig.json' }
  }
}
