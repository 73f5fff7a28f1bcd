import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const processEnv = {
  selector: "MemberExpression[object.name='process'][property.name='env']",
  message: 'Read configuration through src/config.ts, not process.env.',
};

/**
 * One road to the database: SQL is a Kysely `sql` template, so the server binds every value.
 * Nothing formats a value into SQL text on the client: no `em.execute('…')`, no `.query('…')` on
 * a pg client, no `sql.lit`, and `sql.raw` only of a constant string.
 */
const boundSql = [
  {
    selector: "CallExpression[callee.property.name='execute'][arguments.0.type=/^(Literal|TemplateLiteral)$/]",
    message: 'Write SQL as a Kysely sql template run through db/database.ts, not a string for em.execute.',
  },
  {
    selector: "CallExpression[callee.property.name='query'][arguments.0.type=/^(Literal|TemplateLiteral)$/]",
    message: 'Write SQL as a Kysely sql template run through db/database.ts, not a string for a pg client.',
  },
  {
    selector: "CallExpression[callee.object.name='sql'][callee.property.name='lit']",
    message: 'sql.lit formats a value into the SQL text: bind it (${value}) instead.',
  },
  {
    selector:
      "CallExpression[callee.object.name='sql'][callee.property.name='raw'][arguments.0.type!='Literal'], CallExpression[callee.object.name='sql'][callee.property.name='raw'][arguments.0.type='TemplateLiteral']",
    message: 'sql.raw only of a constant string; bind values (${value}) and use sql.id / sql.table for names.',
  },
];

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', 'dist/', 'coverage/', 'clients/typescript/dist/'] },
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
      'no-restricted-syntax': ['error', processEnv, ...boundSql],
    },
  },
  {
    // Dependencies point down: the layers below features never import one. And the serving road
    // goes through db/database.ts: only db/ speaks to pg directly.
    files: ['src/**/*.ts'],
    ignores: ['src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [{ name: 'pg', message: 'Reach the database through db/database.ts.' }, { name: 'pg-cursor' }] },
      ],
    },
  },
  {
    files: ['src/http/**/*.ts', 'src/auth/**/*.ts', 'src/policy/**/*.ts', 'src/events/**/*.ts', 'src/json.ts'],
    ignores: ['src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'pg', message: 'Reach the database through db/database.ts.' }, { name: 'pg-cursor' }],
          patterns: [
            { group: ['**/features/**'], message: 'http/, db/, auth/, policy/ and events/ never import a feature.' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/db/**/*.ts'],
    ignores: ['src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/features/**'], message: 'http/, db/, auth/, policy/ and events/ never import a feature.' },
          ],
        },
      ],
    },
  },
  {
    // The owner's setup (roles, grants, DDL) and the embedded server are not the serving road:
    // identifiers are escaped there, and every value is a bound parameter.
    files: ['src/db/bootstrap.ts', 'src/db/embedded.ts', 'src/db/embedded/**/*.ts'],
    rules: { 'no-restricted-syntax': ['error', processEnv] },
  },
  {
    // The client runs in browsers as well as Node 20+: nothing Node-only, neither modules nor globals.
    files: ['clients/typescript/src/**/*.ts'],
    languageOptions: { globals: { process: 'off' } },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^node:', message: 'The client runs in browsers too: no Node modules.' },
            {
              regex: `^(${builtinModules.join('|')})(/|$)`,
              message: 'The client runs in browsers too: no Node modules.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        ...['process', 'Buffer', 'global', 'require', 'module', '__dirname', '__filename', 'setImmediate'].map(
          (name) => ({ name, message: 'The client runs in browsers too: no Node-only globals.' }),
        ),
      ],
    },
  },
  {
    // The console's page scripts run in the browser, as they are served (no build step). Data is
    // rendered as text only, and the token stays in sessionStorage.
    files: ['src/features/console/static/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'window',
          'document',
          'location',
          'sessionStorage',
          'fetch',
          'URL',
          'Node',
          'getComputedStyle',
          'confirm',
          'setTimeout',
          'console',
        ]
          .map((name) => [name, 'readonly'])
          .concat([['process', 'off']]),
      ),
    },
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'MemberExpression[property.name=/^(innerHTML|outerHTML|srcdoc)$/]',
          message: 'Render data as text (h(), textContent), never as HTML.',
        },
        {
          selector:
            'CallExpression[callee.property.name=/^(insertAdjacentHTML|write|writeln|createContextualFragment)$/]',
          message: 'Render data as text (h(), textContent), never as HTML.',
        },
        {
          selector: "MemberExpression[property.name='cookie'], Identifier[name='localStorage']",
          message: 'The token lives in sessionStorage only: no cookies, no localStorage.',
        },
      ],
    },
  },
  {
    // Tests and the scripts beside the service (bench, seed, `npm run token`) read their own variables.
    files: [
      'test/**',
      'src/**/*.test.ts',
      'bench/**',
      'seeds/**',
      'jest.config.js',
      'src/config.ts',
      'src/main.ts',
      'src/features/dev-issuer/token.ts',
    ],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
