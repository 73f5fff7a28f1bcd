import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type pg from 'pg';
import { parseConditions, matches } from '../src/policy/conditions.ts';
import { recordCondition, SqlParameters } from '../src/policy/sql-filter.ts';
import { referenceMatches } from './support/mongo-reference.ts';
import { ownerClient, uniqueSlug } from './support/app.ts';
import { documents, queries } from './support/query-arbitraries.ts';

/**
 * The compiled SQL filter against the in-memory matcher and the reference, on real PostgreSQL:
 * generated documents are stored as records, the compiled WHERE selects some of them, and the
 * selection must be exactly the documents both matchers accept.
 */
describe('SQL filter agreement', () => {
  let client: pg.Client;
  const workspaceId = randomUUID();

  beforeAll(async () => {
    client = await ownerClient();
    await client.query('insert into workspaces (id, slug, name) values ($1, $2, $3)', [workspaceId, uniqueSlug('sqlfilter'), 'sql filter']);
    await client.query(`insert into structures (workspace_id, name, fields) values ($1, 'Doc', '{}')`, [workspaceId]);
  });
  afterAll(async () => {
    await client.query('delete from workspaces where id = $1', [workspaceId]);
    await client.end();
  });

  async function selected(condition: Parameters<typeof recordCondition>[0], batch: Record<string, unknown>[]): Promise<boolean[]> {
    await client.query('begin');
    try {
      const ids = batch.map(() => randomUUID());
      await client.query(
        `insert into records (id, workspace_id, structure, data, created_by)
         select id, $1, 'Doc', data, 'tester' from unnest($2::uuid[], $3::jsonb[]) as batch(id, data)`,
        [workspaceId, ids, batch.map((document) => JSON.stringify(document))],
      );
      const parameters = new SqlParameters();
      const where = parameters.bind(recordCondition(condition, parameters), 1);
      const { rows } = await client.query<{ id: string }>(`select r.id from records r where r.workspace_id = $1 and ${where.text}`, [workspaceId, ...where.values]);
      const found = new Set(rows.map((row) => row.id));
      return ids.map((id) => found.has(id));
    } finally {
      await client.query('rollback');
    }
  }

  it('selects exactly the records both matchers accept, over generated queries and documents', async () => {
    let matched = 0;
    await fc.assert(
      fc.asyncProperty(queries, fc.array(documents, { minLength: 1, maxLength: 8 }), async (query, batch) => {
        const parsed = parseConditions(query, '');
        expect(parsed.errors).toEqual([]);
        const expected = batch.map((document) => referenceMatches(query, document));
        expect(batch.map((document) => matches(parsed.condition!, document))).toEqual(expected);
        expect(await selected(parsed.condition!, batch as Record<string, unknown>[])).toEqual(expected);
        matched += expected.filter(Boolean).length;
      }),
      { numRuns: 1500 },
    );
    expect(matched).toBeGreaterThan(500);
  }, 90_000);
});
