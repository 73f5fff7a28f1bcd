import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type pg from 'pg';
import { asRecordSubject, buildAbility, type PolicyRule } from '../src/policy/ability.ts';
import { parseConditions, matches } from '../src/policy/conditions.ts';
import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
  type RawBuilder,
} from 'kysely';
import { containmentDocuments, recordCondition, rulesCondition, rulesContainment } from '../src/policy/sql-filter.ts';
import { referenceMatches } from './support/mongo-reference.ts';
import { ownerClient, uniqueSlug } from './support/app.ts';
import { documents, queries } from './support/query-arbitraries.ts';

/** Compiles Kysely fragments to text and parameters for the owner's plain client (no connection needed). */
const compiler = new Kysely<Record<string, never>>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

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
    await client.query('insert into workspaces (id, slug, name) values ($1, $2, $3)', [
      workspaceId,
      uniqueSlug('sqlfilter'),
      'sql filter',
    ]);
    await client.query(`insert into structures (workspace_id, name, fields) values ($1, 'Doc', '{}')`, [workspaceId]);
  });
  afterAll(async () => {
    await client.query('delete from workspaces where id = $1', [workspaceId]);
    await client.end();
  });

  function selectWhere(where: RawBuilder<unknown>): { text: string; values: unknown[] } {
    const compiled = sql`select r.id from records r where r.workspace_id = ${workspaceId}::uuid and ${where}`.compile(
      compiler,
    );
    return { text: compiled.sql, values: [...compiled.parameters] };
  }

  async function selected(
    condition: Parameters<typeof recordCondition>[0],
    batch: Record<string, unknown>[],
    where: RawBuilder<unknown> = recordCondition(condition),
  ): Promise<boolean[]> {
    await client.query('begin');
    try {
      const ids = batch.map(() => randomUUID());
      await client.query(
        `insert into records (id, workspace_id, structure, data, created_by)
         select id, $1, 'Doc', data, 'tester' from unnest($2::uuid[], $3::jsonb[]) as batch(id, data)`,
        [workspaceId, ids, batch.map((document) => JSON.stringify(document))],
      );
      const { rows } = await client.query<{ id: string }>(selectWhere(where));
      const found = new Set(rows.map((row) => row.id));
      return ids.map((id) => found.has(id));
    } finally {
      await client.query('rollback');
    }
  }

  /** Stores the records (data and system columns) and returns which of them the compiled WHERE selects. */
  async function selectedRecords(records: StoredRecord[], where: RawBuilder<unknown>): Promise<boolean[]> {
    await client.query('begin');
    try {
      await client.query(
        `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
         select id, $1, 'Doc', data, created_by, created_at, updated_at
         from unnest($2::uuid[], $3::jsonb[], $4::text[], $5::timestamptz[], $6::timestamptz[]) as batch(id, data, created_by, created_at, updated_at)`,
        [
          workspaceId,
          records.map((record) => record.id),
          records.map((record) => JSON.stringify(record.data)),
          records.map((record) => record.createdBy),
          records.map((record) => record.createdAt),
          records.map((record) => record.updatedAt),
        ],
      );
      const { rows } = await client.query<{ id: string }>(selectWhere(where));
      const found = new Set(rows.map((row) => row.id));
      return records.map((record) => found.has(record.id));
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

  it('finds every matching record among those containing one of its containment documents', async () => {
    let guided = 0;
    await fc.assert(
      fc.asyncProperty(queries, fc.array(documents, { minLength: 1, maxLength: 8 }), async (query, batch) => {
        const condition = parseConditions(query, '').condition!;
        const containing = containmentDocuments(condition);
        if (!containing) return;
        guided += 1;
        const outside = sql`${recordCondition(condition)} and not (r.data @> any (${containing.map((document) => JSON.stringify(document))}::jsonb[]))`;
        expect(await selected(condition, batch as Record<string, unknown>[], outside)).toEqual(batch.map(() => false));
      }),
      { numRuns: 800 },
    );
    expect(guided).toBeGreaterThan(100);
  }, 90_000);

  const generatedAbility = (rules: PolicyRule[]) =>
    buildAbility([{ id: randomUUID(), name: 'generated', version: 1, roles: ['r'], rules }], {
      principal: { id: 'u1', roles: ['r'], claims: {} },
      workspaceId,
    });

  it('finds every record a rule set allows among those containing one of its rules’ documents', async () => {
    let guided = 0;
    let allowed = 0;
    await fc.assert(
      fc.asyncProperty(ruleSets, recordBatches, async (rules, records) => {
        const ability = generatedAbility(rules);
        const ordered = ability.rulesFor('read', 'Doc');
        const containing = rulesContainment(ordered);
        if (!containing) return;
        guided += 1;
        // Beside the generated records, one made to match each allowing rule's equalities.
        const made = ordered.flatMap((rule) =>
          rule.inverted || !rule.condition
            ? []
            : (containmentDocuments(rule.condition) ?? []).map((document) => ({
                ...records[0]!,
                id: randomUUID(),
                data: { ...records[0]!.data, ...(document as Record<string, unknown>) },
              })),
        );
        const stored = [...records, ...made];
        const documents = containing.map((document) => JSON.stringify(document));
        const outside = sql`${rulesCondition(ordered)} and not (r.data @> any (${documents}::jsonb[]))`;
        expect(await selectedRecords(stored, outside)).toEqual(stored.map(() => false));
        allowed += (await selectedRecords(stored, rulesCondition(ordered))).filter(Boolean).length;
      }),
      { numRuns: 1000 },
    );
    // Rule sets that imply documents, and records they allow: the property was put to the test.
    expect(guided).toBeGreaterThan(60);
    expect(allowed).toBeGreaterThan(40);
  }, 90_000);

  it('agrees with CASL and the reference on whole rule sets: precedence, system fields, hostile values', async () => {
    let allowed = 0;
    await fc.assert(
      fc.asyncProperty(ruleSets, recordBatches, async (rules, records) => {
        const ability = generatedAbility(rules);
        const documents = records.map(documentOf);
        const expected = documents.map((document) => {
          const matching = rules.filter(
            (rule) => rule.conditions === undefined || referenceMatches(rule.conditions, document),
          );
          return matching.some((rule) => !rule.inverted) && !matching.some((rule) => rule.inverted);
        });
        expect(documents.map((document) => ability.can('read', asRecordSubject('Doc', document)))).toEqual(expected);
        expect(await selectedRecords(records, rulesCondition(ability.rulesFor('read', 'Doc')))).toEqual(expected);
        allowed += expected.filter(Boolean).length;
      }),
      { numRuns: 1000 },
    );
    expect(allowed).toBeGreaterThan(300);
  }, 90_000);
});

interface StoredRecord {
  id: string;
  data: Record<string, unknown>;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

const documentOf = (record: StoredRecord) => ({
  ...record.data,
  id: record.id,
  createdBy: record.createdBy,
  createdAt: record.createdAt,
  updatedAt: record.updatedAt,
});

const users = ['u1', 'u2', 'U1', 'é', ''];
const instants = ['2026-01-01T00:00:00.000Z', '2026-06-15T12:30:00.123Z', '2025-12-31T23:59:59.999Z'];
const fixedIds = ['00000000-0000-4000-8000-000000000001', 'ffffffff-ffff-4fff-bfff-ffffffffffff'];
const storedRecords: fc.Arbitrary<StoredRecord> = fc.record({
  id: fc.oneof(fc.constantFrom(...fixedIds), fc.uuid({ version: 4 })),
  data: documents,
  createdBy: fc.constantFrom(...users),
  createdAt: fc.constantFrom(...instants),
  updatedAt: fc.constantFrom(...instants),
});

// Values a condition on a system field may meet: right and wrong types, prefixes, other cases.
const systemValues = [
  ...users,
  ...instants,
  ...fixedIds,
  '2026',
  '2026-06-15T12:30:00Z',
  'FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF',
  1,
  true,
  null,
];
const systemPatterns = ['^u', '1$', '^2026-0', '^.{36}$', 'F', '^$'];
const systemQuery: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.constantFrom('createdBy', 'createdAt', 'updatedAt', 'id', 'createdBy.x'),
    fc.oneof(
      fc.constantFrom(...systemValues).filter((value) => value !== null),
      fc
        .tuple(
          fc.constantFrom('$eq', '$ne', '$lt', '$lte', '$gt', '$gte'),
          fc.constantFrom(...systemValues).filter((value) => typeof value !== 'boolean' && value !== null),
        )
        .map(([operator, value]) => ({ [operator]: value })),
      fc
        .tuple(
          fc.constantFrom('$in', '$nin'),
          fc.array(
            fc.constantFrom(...systemValues).filter((value) => value !== null),
            { maxLength: 3 },
          ),
        )
        .map(([operator, values]) => ({ [operator]: values })),
      fc.record({ $regex: fc.constantFrom(...systemPatterns), $options: fc.constantFrom('', 'i') }),
      fc.boolean().map((exists) => ({ $exists: exists })),
      fc.constant({ $size: 0 }),
    ),
  )
  .filter(([path, value]) => !(path.includes('.') && value === null))
  .map(([path, value]) => ({ [path]: value }));

const ruleConditions = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 4, arbitrary: queries },
  { weight: 2, arbitrary: systemQuery },
  { weight: 1, arbitrary: fc.tuple(queries, systemQuery).map(([data, system]) => ({ $or: [data, system] })) },
);
const recordBatches = fc.uniqueArray(storedRecords, { minLength: 1, maxLength: 8, selector: (record) => record.id });
const ruleSets: fc.Arbitrary<PolicyRule[]> = fc.array(
  fc.record({ inverted: fc.boolean(), conditions: ruleConditions }).map(({ inverted, conditions }) => ({
    action: 'read',
    subject: 'Doc',
    inverted,
    ...(conditions !== undefined && { conditions }),
  })),
  { minLength: 1, maxLength: 4 },
);
