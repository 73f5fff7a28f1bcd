import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', 'dist/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      // With noUncheckedIndexedAccess, `!` after a checked lookup is the honest spelling.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Prettier owns line breaks; this rule misreads its chained-call layout.
      'no-unexpected-multiline': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Read configuration through src/config.ts, not process.env.',
        },
      ],
    },
  },
  {
    files: ['test/**', 'src/**/*.test.ts', 'bench/**', 'seeds/**', 'jest.config.js', 'src/config.ts', 'src/main.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
