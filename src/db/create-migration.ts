import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run migration:create -- <Name>` writes src/db/migrations/Migration<UTC timestamp><Name>.ts
 * and appends it to the list in src/db/migrations/index.ts. Migrations are written by hand
 * (schema snapshots are off): the template carries what a new tenant table needs in the same
 * migration — row-level security, its policy, and a grant line for src/db/grants.ts — which
 * test/rls.test.ts then checks without being edited.
 */
const directory = fileURLToPath(new URL('./migrations/', import.meta.url));
const name = process.argv[2] ?? '';
if (!/^[A-Z][A-Za-z0-9]{1,60}$/.test(name)) {
  process.stderr.write('usage: npm run migration:create -- <PascalCaseName>\n');
  process.exit(2);
}
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const className = `Migration${stamp}${name}`;
const file = path.join(directory, `${className}.ts`);

const template = `import { Migration } from '@mikro-orm/migrations';

/**
 * What this migration does, and why. A tenant table carries workspace_id, enables row-level
 * security with a policy keyed on cordon_current_workspace(), and is listed in src/db/grants.ts
 * with exactly what the serving role may do.
 */
export class ${className} extends Migration {
  override name = '${className}';

  override up(): void {
    // this.addSql(\`create table things (
    //   workspace_id uuid not null references workspaces (id) on delete cascade,
    //   id uuid not null,
    //   primary key (workspace_id, id)
    // )\`);
    // this.addSql('alter table things enable row level security');
    // this.addSql(\`create policy things_workspace_scope on things
    //   using (workspace_id = cordon_current_workspace())
    //   with check (workspace_id = cordon_current_workspace())\`);
  }
}
`;

await writeFile(file, template, { flag: 'wx' });
const index = path.join(directory, 'index.ts');
const listed = await readFile(index, 'utf8');
const imports = listed.lastIndexOf("from './Migration");
const afterImports = listed.indexOf('\n', imports) + 1;
const imported = `${listed.slice(0, afterImports)}import { ${className} } from './${className}.ts';\n${listed.slice(afterImports)}`;
await writeFile(index, imported.replace(/\n\];\s*$/, `\n  ${className},\n];\n`));
process.stdout.write(`created ${path.relative(process.cwd(), file)} and listed it in src/db/migrations/index.ts\n`);
