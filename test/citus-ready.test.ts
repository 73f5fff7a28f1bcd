import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { ownerClient } from './support/app.ts';
import { repositoryRoot } from './support/process.ts';

/**
 * Citus-ready, driven by the catalogue: every table with a `workspace_id` column (in any schema,
 * today's and any a later migration adds) can be distributed by `workspace_id`. Its primary key,
 * each unique constraint or unique index, and each foreign key include `workspace_id`, and a
 * foreign key to another tenant table pairs `workspace_id` with that table's `workspace_id` (so
 * both sides are co-located). Foreign keys to `workspaces` itself are fine: it is a reference
 * table. The list of tenant tables is not written down here; the exceptions are, with reasons.
 */

/** Platform-wide keys on tables that are reference tables on Citus (docs/scaling.md). */
const exceptions: Record<string, string> = {
  identity_providers_issuer_org_key:
    'an (issuer, org) is bound to one workspace across the platform; the front door reads it before it knows a workspace',
  workspace_billing_stripe_customer_id_key:
    'a Stripe customer pays for one workspace; Stripe names the customer, not the workspace',
};

interface Violation {
  table: string;
  key: string;
  problem: string;
}

/** What keeps `table`s in the catalogue visible to `client` from distributing by workspace_id. */
async function violations(client: pg.Client | pg.PoolClient): Promise<{ tables: string[]; found: Violation[] }> {
  const tenantTables = `
    select c.oid, format('%I.%I', n.nspname, c.relname) as name, a.attnum as workspace_column
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attname = 'workspace_id' and not a.attisdropped
    where c.relkind in ('r', 'p') and not c.relispartition
      and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'`;
  const { rows: tables } = await client.query<{ name: string }>(`select name from (${tenantTables}) t order by name`);
  const { rows: found } = await client.query<Violation>(
    `with tenant as (${tenantTables})
     -- No primary key at all.
     select t.name as table, '(none)' as key, 'has no primary key' as problem
     from tenant t
     where not exists (select 1 from pg_index i where i.indrelid = t.oid and i.indisprimary)
     union all
     -- A primary key or unique constraint/index whose key columns leave out workspace_id.
     select t.name, ic.relname, case when i.indisprimary then 'primary key' else 'unique key' end
       || ' leaves out workspace_id: ' || pg_get_indexdef(i.indexrelid)
     from tenant t
     join pg_index i on i.indrelid = t.oid and (i.indisprimary or i.indisunique)
     join pg_class ic on ic.oid = i.indexrelid
     where not (t.workspace_column = any ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
     union all
     -- A foreign key to anything but workspaces that does not match workspace_id to workspace_id.
     select t.name, f.conname, 'foreign key ' || pg_get_constraintdef(f.oid) || ' does not pair workspace_id with '
       || f.confrelid::regclass::text || '.workspace_id'
     from tenant t
     join pg_constraint f on f.conrelid = t.oid and f.contype = 'f'
     where f.confrelid <> 'public.workspaces'::regclass
       and not exists (
         select 1 from unnest(f.conkey, f.confkey) as pair(from_column, to_column)
         join pg_attribute target on target.attrelid = f.confrelid and target.attnum = pair.to_column
         where pair.from_column = t.workspace_column and target.attname = 'workspace_id')
     union all
     -- A foreign key into a tenant table from a table that has no workspace_id to match.
     select format('%I.%I', n.nspname, c.relname), f.conname,
       'references tenant table ' || t.name || ' from a table without workspace_id'
     from tenant t
     join pg_constraint f on f.confrelid = t.oid and f.contype = 'f'
     join pg_class c on c.oid = f.conrelid
     join pg_namespace n on n.oid = c.relnamespace
     where not exists (select 1 from tenant other where other.oid = f.conrelid)
     `,
  );
  return { tables: tables.map((row) => row.name), found };
}

let owner: pg.Client;

beforeAll(async () => {
  owner = await ownerClient();
});
afterAll(async () => {
  await owner.end();
});

describe('every table with a workspace_id column', () => {
  it('is found in the catalogue (the list is not written down here)', async () => {
    const { tables } = await violations(owner);
    expect(tables).toEqual(
      expect.arrayContaining(['public.records', 'public.decisions', 'public.events', 'public.record_counts']),
    );
  });

  it('has its create_distributed_table (or create_reference_table) statement in docs/scaling.md', async () => {
    const { tables } = await violations(owner);
    const doc = await readFile(path.join(repositoryRoot, 'docs', 'scaling.md'), 'utf8');
    const named = new Set(
      [...doc.matchAll(/create_(?:distributed|reference)_table\('(\w+)'/g)].map((match) => `public.${match[1]}`),
    );
    expect(tables.filter((table) => !named.has(table))).toEqual([]);
  });

  it('has a primary key, unique keys and foreign keys that include workspace_id, but for the listed exceptions', async () => {
    const { found } = await violations(owner);
    expect(found.filter((violation) => !Object.hasOwn(exceptions, violation.key))).toEqual([]);
  });

  it('still has each listed exception, so the list cannot go stale', async () => {
    const { found } = await violations(owner);
    expect(found.map((violation) => violation.key).sort()).toEqual(Object.keys(exceptions).sort());
  });
});

describe('the check itself', () => {
  it('catches a table added later whose keys leave out workspace_id', async () => {
    await owner.query('begin');
    try {
      await owner.query(`
        create table citus_probe (
          id uuid primary key,
          workspace_id uuid not null references workspaces (id),
          record_id uuid not null,
          code text not null unique,
          foreign key (workspace_id, record_id) references records (workspace_id, id),
          foreign key (record_id, workspace_id) references records (workspace_id, id)
        )`);
      await owner.query('create unique index citus_probe_code_lower on citus_probe (lower(code))');
      await owner.query('create table citus_probe_platform (record_id uuid, workspace uuid)');
      await owner.query(`
        alter table citus_probe_platform
          add foreign key (workspace, record_id) references records (workspace_id, id)`);
      const { found } = await violations(owner);
      const probed = found.filter((violation) => violation.table.includes('citus_probe'));
      probed.sort((a, b) => (`${a.table} ${a.key}` < `${b.table} ${b.key}` ? -1 : 1));
      expect(probed).toEqual([
        { table: 'public.citus_probe', key: 'citus_probe_code_key', problem: expect.stringContaining('unique key') },
        { table: 'public.citus_probe', key: 'citus_probe_code_lower', problem: expect.stringContaining('unique key') },
        { table: 'public.citus_probe', key: 'citus_probe_pkey', problem: expect.stringContaining('primary key') },
        {
          table: 'public.citus_probe',
          key: 'citus_probe_record_id_workspace_id_fkey',
          problem: expect.stringContaining('does not pair workspace_id'),
        },
        {
          table: 'public.citus_probe_platform',
          key: 'citus_probe_platform_workspace_record_id_fkey',
          problem: expect.stringContaining('from a table without workspace_id'),
        },
      ]);
    } finally {
      await owner.query('rollback');
    }
  });
});
