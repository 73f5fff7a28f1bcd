import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, sql } from 'kysely';
import type pg from 'pg';
import { breakingCondition, dateTimePattern } from '../src/features/structures/breaking-records.ts';
import { withCandidateSchema } from '../src/features/structures/record-schema.ts';
import type { FieldDefinition, Fields } from '../src/features/structures/structures.schema.ts';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

/**
 * A structure change counts the stored records its new fields would break in one statement
 * (breaking-records.ts). That SQL must say what the records' JSON Schema says, record by record.
 */

const compiler = new Kysely<Record<string, never>>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

const names = ['a', 'b', 'c'];
const twoDigits = fc.integer({ min: 0, max: 99 }).map((n) => String(n).padStart(2, '0'));
const dateTimes = fc
  .tuple(
    fc.constantFrom('2024', '0000', '1970', '9999'),
    fc.oneof(twoDigits, fc.constantFrom('02', '12', '13', '00')),
    fc.oneof(twoDigits, fc.constantFrom('29', '30', '31', '32', '00')),
    fc.constantFrom('T', 't'),
    fc.oneof(twoDigits, fc.constantFrom('23', '24', '00')),
    fc.oneof(twoDigits, fc.constantFrom('00', '59', '60')),
    fc.oneof(twoDigits, fc.constantFrom('00', '59', '60')),
    fc.constantFrom('', '.0', '.000', '.5', '.000000000', '.123456789', '.1234567890'),
    fc.oneof(
      fc.constantFrom('Z', 'z', '+00:00', '-00:00', '+23:59', '+24:00'),
      twoDigits.map((h) => `-${h}:30`),
    ),
  )
  .map(([year, month, day, t, hour, minute, second, fraction, offset]) =>
    [year, '-', month, '-', day, t, hour, ':', minute, ':', second, fraction, offset].join(''),
  );

const values: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('low', 'high', '', 'Zoë', '😀😀😀', 'x'.repeat(6), randomUUID(), randomUUID().toUpperCase()),
  dateTimes,
  fc.constantFrom(0, -0, 1, 2, 3, 1.5, 0.1, 0.30000000000000004, -7, 1e21, 2 ** 53 + 2, 5e-324),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: -10, max: 10 }),
  fc.boolean(),
  fc.constant(null),
  fc.constant([1]),
  fc.constant({ x: 'low' }),
);

const bounds = fc.option(fc.constantFrom(-1, 0, 0.1, 1, 2, 1.5, 1e21), { nil: undefined });
const field = fc.oneof(
  fc.record(
    {
      type: fc.constant('text' as const),
      required: fc.boolean(),
      maxLength: fc.option(fc.constantFrom(1, 3, 4, 5), { nil: undefined }),
      enum: fc.option(fc.constantFrom(['low', 'high'], ['Zoë', '😀😀😀', 'x']), { nil: undefined }),
    },
    { requiredKeys: ['type', 'required'] },
  ),
  fc
    .record(
      {
        type: fc.constantFrom('number' as const, 'integer' as const),
        required: fc.boolean(),
        min: bounds,
        max: bounds,
        enum: fc.option(fc.constantFrom([1, 2], [0.1, 1.5, -7]), { nil: undefined }),
      },
      { requiredKeys: ['type', 'required'] },
    )
    .map((definition) => definition as FieldDefinition),
  fc.record({
    type: fc.constantFrom('boolean' as const, 'datetime' as const, 'json' as const),
    required: fc.boolean(),
  }),
  fc.record({ type: fc.constant('reference' as const), required: fc.boolean(), structure: fc.constant('Doc') }),
);
const fieldSets = fc
  .dictionary(fc.constantFrom(...names), field, { maxKeys: 3 })
  .map((fields) => fields as unknown as Fields);
const documents = fc.dictionary(fc.constantFrom(...names, 'd'), values, { maxKeys: 4 });

describe('the breaking-records count', () => {
  let client: pg.Client;
  const workspaceId = randomUUID();

  beforeAll(async () => {
    client = await ownerClient();
    await client.query('insert into workspaces (id, slug, name) values ($1, $2, $3)', [
      workspaceId,
      uniqueSlug('breaking'),
      'breaking',
    ]);
    await client.query(`insert into structures (workspace_id, name, fields) values ($1, 'Doc', '{}')`, [workspaceId]);
  });
  afterAll(async () => {
    await client.query('delete from workspaces where id = $1', [workspaceId]);
    await client.end();
  });

  it('reads datetimes as record-schema.ts does (its pattern and Date.parse)', () => {
    const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;
    const pattern = new RegExp(dateTimePattern);
    fc.assert(
      fc.property(dateTimes, (value) => {
        expect(pattern.test(value)).toBe(rfc3339.test(value) && !Number.isNaN(Date.parse(value)));
      }),
      { numRuns: 20_000 },
    );
  });

  it('counts exactly the records the new fields’ JSON Schema refuses, filled defaults included', async () => {
    let breaking = 0;
    await fc.assert(
      fc.asyncProperty(
        fieldSets.filter((fields) =>
          Object.values(fields).every(
            (definition) =>
              !('min' in definition) ||
              definition.min === undefined ||
              definition.max === undefined ||
              definition.min <= definition.max,
          ),
        ),
        fc.array(documents, { minLength: 1, maxLength: 8 }),
        fc.subarray(names),
        async (fields: Fields, batch, filledNames) => {
          const filled = filledNames.filter((name) => Object.hasOwn(fields, name));
          // A filled field holds a value that fits it (a default is checked when it is set).
          const fitting = Object.fromEntries(
            filled
              .map((name) => [name, fittingValue(fields[name]!)] as const)
              .filter(([, value]) => value !== undefined),
          );
          const usable = filled.filter((name) => Object.hasOwn(fitting, name));
          const expected = await withCandidateSchema(fields, async (schema) =>
            batch.map(
              (data) => schema.validate(schema.normalise({ ...fitting, ...data }, { defaults: false })).length > 0,
            ),
          );
          expect(await refused(fields, usable, batch)).toEqual(expected);
          breaking += expected.filter(Boolean).length;
        },
      ),
      { numRuns: 1500 },
    );
    expect(breaking).toBeGreaterThan(500);
  }, 120_000);

  async function refused(fields: Fields, filled: string[], batch: Record<string, unknown>[]): Promise<boolean[]> {
    await client.query('begin');
    try {
      const ids = batch.map(() => randomUUID());
      await client.query(
        `insert into records (id, workspace_id, structure, data, created_by)
         select id, $1, 'Doc', data, 'tester' from unnest($2::uuid[], $3::jsonb[]) as batch(id, data)`,
        [workspaceId, ids, batch.map((document) => JSON.stringify(document))],
      );
      const compiled =
        sql`select r.id from records r where r.workspace_id = ${workspaceId}::uuid and ${breakingCondition(fields, filled)}`.compile(
          compiler,
        );
      const { rows } = await client.query<{ id: string }>(compiled.sql, [...compiled.parameters]);
      const found = new Set(rows.map((row) => row.id));
      return ids.map((id) => found.has(id));
    } finally {
      await client.query('rollback');
    }
  }
});

/** A value that satisfies the definition, if this simple search finds one. */
function fittingValue(definition: FieldDefinition): unknown {
  switch (definition.type) {
    case 'text':
      return definition.enum ? definition.enum.find((value) => [...value].length <= (definition.maxLength ?? 1e9)) : '';
    case 'number':
    case 'integer': {
      const candidates = definition.enum ?? [definition.min ?? definition.max ?? 0, definition.max ?? 0];
      return candidates.find(
        (value) =>
          (definition.type === 'number' || Number.isInteger(value)) &&
          (definition.min === undefined || value >= definition.min) &&
          (definition.max === undefined || value <= definition.max),
      );
    }
    case 'boolean':
      return true;
    case 'datetime':
      return '2026-01-01T00:00:00.000Z';
    case 'json':
      return null;
    case 'reference':
      return randomUUID();
  }
}

describe('a structure change over many records', () => {
  let cordon: TestApp;
  let owner: pg.Client;
  let issuer: TestIssuer;
  const count = 200_000;

  beforeAll(async () => {
    cordon = await startTestApp();
    owner = await ownerClient();
    issuer = await TestIssuer.start();
  });
  afterAll(async () => {
    await issuer.close();
    await owner.end();
    await cordon.close();
  });

  it(`counts the breaking ones among ${count.toLocaleString('en')} records in one statement`, async () => {
    const tenant = await createTenant(cordon, issuer, 'many');
    const admin = await tenant.token('user_admin', 'admin');
    const fields = { title: { type: 'text', required: true }, level: { type: 'integer', min: 1, max: 5 } };
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/structures`)
      .auth(admin, { type: 'bearer' })
      .send({ name: 'Task', fields })
      .expect(201);
    // Every 1,000th record has level 5, which the change below no longer allows.
    await owner.query(
      `insert into records (id, workspace_id, structure, data, created_by)
       select gen_random_uuid(), $1, 'Task', jsonb_build_object('title', 'Task ' || i, 'level', case when i % 1000 = 0 then 5 else 1 + i % 4 end), 'seed'
       from generate_series(1, $2::int) as i`,
      [tenant.id, count],
    );
    const started = performance.now();
    const { body } = await cordon
      .http()
      .put(`/v1/workspaces/${tenant.slug}/structures/Task`)
      .auth(admin, { type: 'bearer' })
      .send({ fields: { ...fields, level: { type: 'integer', min: 1, max: 4 } } })
      .expect(409);
    const elapsed = performance.now() - started;
    expect(body.detail).toMatch(new RegExp(`^${count / 1000} stored records would not match`));
    console.log(`structure change over ${count} records: ${elapsed.toFixed(0)} ms`);
  }, 120_000);
});

describe('a structure deleted and made again under its name', () => {
  let cordon: TestApp;
  let issuer: TestIssuer;

  beforeAll(async () => {
    cordon = await startTestApp();
    issuer = await TestIssuer.start();
  });
  afterAll(async () => {
    await issuer.close();
    await cordon.close();
  });

  // Both are version 1: the records' schema must be the new fields', not the one this instance
  // compiled for the deleted structure.
  it('validates records against its new fields', async () => {
    const tenant = await createTenant(cordon, issuer, 'remade');
    const admin = await tenant.token('user_admin', 'admin');
    const as = (method: 'post' | 'delete', path: string) =>
      cordon.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' });
    await as('post', '/structures')
      .send({ name: 'Task', fields: { title: { type: 'text', required: true } } })
      .expect(201);
    await as('post', '/records/Task')
      .send({ data: { title: 'first' } })
      .expect(201);
    await as('delete', '/structures/Task?force=true').expect(204);
    const remade = await as('post', '/structures')
      .send({ name: 'Task', fields: { name: { type: 'text', required: true } } })
      .expect(201);
    expect(remade.body.version).toBe(1);

    const refused = await as('post', '/records/Task')
      .send({ data: { title: 'fits the old fields only' } })
      .expect(400);
    expect(refused.body.code).toBe('validation_failed');
    await as('post', '/records/Task')
      .send({ data: { name: 'fits the new' } })
      .expect(201);
  });

  // Made again on another instance, say, whose announcement has not reached this one: here it is
  // changed straight in the database, which announces nothing, so this instance's catalog still
  // holds the deleted structure. Its writes must not store what only the old fields allow.
  it('keeps out writes validated against the deleted fields, before this instance hears of it', async () => {
    const tenant = await createTenant(cordon, issuer, 'remade-elsewhere');
    const admin = await tenant.token('user_admin', 'admin');
    const records = (path = '') => `/v1/workspaces/${tenant.slug}/records/Task${path}`;
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/structures`)
      .auth(admin, { type: 'bearer' })
      .send({ name: 'Task', fields: { title: { type: 'text', required: true } } })
      .expect(201);
    await cordon
      .http()
      .post(records())
      .auth(admin, { type: 'bearer' })
      .send({ data: { title: 'first' } })
      .expect(201);

    const owner = await ownerClient();
    const kept = randomUUID();
    try {
      await owner.query('begin');
      await owner.query(`delete from structures where workspace_id = $1 and name = 'Task'`, [tenant.id]);
      await owner.query(`insert into structures (workspace_id, name, fields, version) values ($1, 'Task', $2, 1)`, [
        tenant.id,
        JSON.stringify({ title: { type: 'integer', required: true } }),
      ]);
      await owner.query(
        `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
         values ($1, $2, 'Task', '{"title": 5}', 'user_admin', now(), now())`,
        [kept, tenant.id],
      );
      await owner.query('commit');

      const created = await cordon
        .http()
        .post(records())
        .auth(admin, { type: 'bearer' })
        .send({ data: { title: 'text, as the deleted fields had it' } });
      expect(created.status).toBe(400);
      expect(created.body.code).toBe('validation_failed');
      const patched = await cordon
        .http()
        .patch(records(`/${kept}`))
        .auth(admin, { type: 'bearer' })
        .send({ data: { title: 'text again' } });
      expect(patched.status).toBe(400);
      expect(patched.body.code).toBe('validation_failed');
      const { rows } = await owner.query<{ id: string; data: unknown }>(
        `select id, data from records where workspace_id = $1 and structure = 'Task'`,
        [tenant.id],
      );
      expect(rows).toEqual([{ id: kept, data: { title: 5 } }]);
    } finally {
      await owner.end();
    }
    await cordon
      .http()
      .post(records())
      .auth(admin, { type: 'bearer' })
      .send({ data: { title: 7 } })
      .expect(201);
  });
});
