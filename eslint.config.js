import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['**/dist/**', '**/node_modules/**', '.data/**', '**/.tap/**'] }),
  {
    rules: {
      // `void promise` marks a deliberately unawaited call; it is not an expression value.
      'no-void': ['error', { allowAsStatement: true }]
    }
  }
]
