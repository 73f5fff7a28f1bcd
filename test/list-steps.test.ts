import fc from 'fast-check';
import { sql } from 'kysely';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { pino } from 'pino';
import { entities } from '../src/app.ts';
import { Database } from '../src/db/database.ts';
import { listFilter, listPage } from '../src/features/records/list-query.ts';
import type { ListQuery } from '../src/features/records/records.schema.ts';
import { pageStatement, type PageQuery, type WalkDepths } from '../src/features/records/record-store.ts';
import { parseConditions } from '../src/policy/conditions.ts';
import { recordCondition, rulesCondition, rulesContainment, type OrderedRule } from '../src/policy/sql-filter.ts';
import { ownerClient, testDatabase, uniqueSlug } from './support/app.ts';

/**
 * A list page with containment candidates takes one of three steps — the ordered probe, a longer
 * ordered walk past it, or the GIN index's candidates — and each must give exactly the page the
 * plain ordered walk gives. Shallow depths here make every step reachable on a few hundred records;
 * the test also works out, from the data, which step each page must have taken, and fails unless
 * every step served many pages.
 */

const depths: WalkDepths = { probe: 10, walk: 60 };
const total = 300;
const fields = { d2: 2, d7: 7, d23: 23, d61: 61 } as const;
type Field = keyof typeof fields;
const fieldNames = Object.keys(fields);

let database: Database;
let owner: pg.Client;
const workspaces = [randomUUID(), randomUUID()];

/** Record i: dN = i % N (every eleventh as a one-element array), three records to each second. */
async function seed(workspaceId: string): Promise<void> {
  await owner.query('insert into workspaces (id, slug, name) values ($1, $2, $3)', [
    workspaceId,
    uniqueSlug('steps'),
    'steps',
  ]);
  await owner.query(`insert into structures (workspace_id, name, fields) values ($1, 'Task', '{}')`, [workspaceId]);
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     select gen_random_uuid(), $1, 'Task',
            jsonb_build_object('d2', i % 2, 'd23', i % 23, 'd61', i % 61,
                               'd7', case when i % 11 = 0 then to_jsonb(array[i % 7]) else to_jsonb(i % 7) end),
            'seed', stamp, stamp
     from generate_series(1, $2::int) as i,
          lateral (select timestamptz '2026-01-01' + make_interval(secs => i / 3) as stamp) t`,
    [workspaceId, total],
  );
}

beforeAll(async () => {
  owner = await ownerClient();
  for (const workspaceId of workspaces) await seed(workspaceId);
  database = await Database.open({ url: testDatabase.appUrl(), poolSize: 1, entities }, pino({ level: 'silent' }));
});
afterAll(async () => {
  await database.close();
  for (const workspaceId of workspaces) await owner.query('delete from workspaces where id = $1', [workspaceId]);
  await owner.end();
});

type Row = { id: string; k0: string; k1: string } & Record<string, unknown>;

const run = (page: PageQuery, workspaceId: string) =>
  database.inWorkspace(workspaceId, (scope) => pageStatement<Row>('Task', page, undefined, depths)(scope));

interface Shape {
  sort: string;
  filter: Record<string, unknown> | undefined;
  rule: Record<string, unknown> | undefined;
  limit: number;
}

/** A page of the shape's list after `cursor`, built as the records service builds it (the shape's rule reads). */
function listed(shape: Shape, workspaceId: string, cursor?: string) {
  const rules: OrderedRule[] = shape.rule
    ? [{ inverted: false, condition: parseConditions(shape.rule, '').condition }]
    : [{ inverted: false }];
  const query = {
    limit: shape.limit,
    sort: shape.sort,
    ...(shape.filter && { filter: JSON.stringify(shape.filter) }),
    ...(cursor && { cursor }),
  } as ListQuery;
  const filter = listFilter(query, { fieldNames });
  const list = listPage(workspaceId, 'Task', query, filter);
  const permitted = rulesCondition(rules);
  const where = filter.condition ? sql`${permitted} and ${recordCondition(filter.condition)}` : permitted;
  return { page: list.of(where, rulesContainment(rules)), cursorAfter: list.cursorAfter };
}

/** Every page of the list, as the service pages it: `limit` + 1 rows, then the cursor after the last shown. */
async function pages(shape: Shape, ordered: boolean, workspaceId = workspaces[0]!): Promise<string[][]> {
  const found: string[][] = [];
  let cursor: string | undefined;
  do {
    const { page, cursorAfter } = listed(shape, workspaceId, cursor);
    if (!ordered && !page.containing) return [];
    const rows = await run(ordered ? { ...page, containing: undefined } : page, workspaceId);
    const shown = rows.slice(0, shape.limit);
    found.push(shown.map((row) => row.id));
    cursor = rows.length > shape.limit ? cursorAfter(shown.at(-1)!) : undefined;
  } while (cursor);
  return found;
}

type Step = 'probe' | 'walk' | 'index' | 'scan';

/** Which step a page after `start` rows of the order must take, from which rows match. */
function step(matching: boolean[], start: number, limit: number): Exclude<Step, 'scan'> {
  const rest = matching.slice(start);
  const probed = rest.slice(0, depths.probe).filter(Boolean).length;
  // Fewer rows than the probe reads: it read them all.
  if (probed >= limit || rest.length < depths.probe) return 'probe';
  if (probed * depths.walk < depths.probe * limit) return 'index';
  const walked = rest.slice(depths.probe, depths.walk).filter(Boolean).length;
  return probed + walked >= limit || rest.length < depths.walk ? 'walk' : 'index';
}

const field = fc.constantFrom(...(Object.keys(fields) as Field[]));
const equality = field.chain((name) =>
  fc.integer({ min: 0, max: fields[name] - 1 }).map((value) => ({ [name]: value })),
);
const filters = fc.oneof(
  fc.constant(undefined),
  equality,
  fc.tuple(equality, equality).map(([one, other]) => ({ ...other, ...one })),
  field.chain((name) =>
    fc
      .uniqueArray(fc.integer({ min: 0, max: fields[name] - 1 }), { minLength: 1, maxLength: 3 })
      .map((values) => ({ [name]: { $in: values } })),
  ),
  fc.tuple(equality, equality).map(([one, other]) => ({ $or: [one, other] })),
  // No containment: the plain walk, whatever the rule.
  fc.constant({ d61: { $gte: 30 } }),
);
const shapes = fc.record({
  sort: fc.constantFrom('-createdAt', 'createdAt'),
  filter: filters,
  rule: fc.option(equality, { nil: undefined }),
  limit: fc.integer({ min: 1, max: 12 }),
});

describe('a list page with containment candidates', () => {
  it('gives, by whichever step it takes, exactly the pages of the plain ordered walk', async () => {
    const taken = { probe: 0, walk: 0, index: 0 };
    const order = (await pages({ sort: '-createdAt', filter: undefined, rule: undefined, limit: total }, true)).flat();
    await fc.assert(
      fc.asyncProperty(shapes, async (shape) => {
        const stepped = await pages(shape, false);
        if (!stepped.length) return;
        const plain = await pages(shape, true);
        expect(stepped).toEqual(plain);
        // Which steps those pages took: the rows in this sort's order, and which of them match.
        const matched = new Set(plain.flat());
        const inOrder = shape.sort === '-createdAt' ? order : [...order].reverse();
        const matching = inOrder.map((id) => matched.has(id));
        let start = 0;
        for (const shown of plain) {
          taken[step(matching, start, shape.limit + 1)] += 1;
          if (shown.length) start = inOrder.indexOf(shown.at(-1)!) + 1;
        }
      }),
      { numRuns: 150 },
    );
    expect(taken.probe).toBeGreaterThan(30);
    expect(taken.walk).toBeGreaterThan(30);
    expect(taken.index).toBeGreaterThan(30);
  }, 120_000);

  it('takes the step the rows call for, and the ordered statement past too many candidates', async () => {
    const order = (await pages({ sort: '-createdAt', filter: undefined, rule: undefined, limit: total }, true)).flat();
    const cases: (Shape & { expected?: Step })[] = [
      { sort: '-createdAt', filter: { d2: 0 }, rule: undefined, limit: 3 },
      { sort: '-createdAt', filter: { d7: 3 }, rule: undefined, limit: 5 },
      { sort: 'createdAt', filter: { d23: 5 }, rule: { d2: 1 }, limit: 2 },
      { sort: '-createdAt', filter: { d61: 7 }, rule: undefined, limit: 4 },
      // d2 = 0 holds for half the records, more than the walk reads: too many candidates.
      { sort: '-createdAt', filter: { d2: 0, d61: { $gte: 60 } }, rule: undefined, limit: 4, expected: 'scan' },
    ];
    const taken = new Set<Step>();
    for (const shape of cases) {
      const matched = new Set((await pages(shape, true)).flat());
      const inOrder = shape.sort === '-createdAt' ? order : [...order].reverse();
      const expected =
        shape.expected ??
        step(
          inOrder.map((id) => matched.has(id)),
          0,
          shape.limit + 1,
        );
      const observed = await stepTaken(shape);
      expect({ shape, step: observed }).toEqual({ shape, step: expected });
      taken.add(observed);
    }
    expect([...taken].sort()).toEqual(['index', 'probe', 'scan', 'walk']);
  });

  it('reads only its own workspace', async () => {
    // Thirteen records match in each workspace, one page each: the probe finds one or none, and
    // the walk or the index finds the rest.
    const shape = { sort: '-createdAt', filter: { d23: 5 }, rule: undefined, limit: 1 };
    const own = (await pages(shape, false)).flat();
    const other = (await pages(shape, false, workspaces[1])).flat();
    expect(own).toHaveLength(13);
    expect(own).toEqual((await pages(shape, true)).flat());
    expect(other).toHaveLength(13);
    expect(other.filter((id) => own.includes(id))).toEqual([]);
  });
});

describe('the GIN candidates function', () => {
  const candidates = (workspaceId: string | null, maxRows: number) =>
    database.inWorkspace(
      workspaceId,
      (scope) => sql<{ workspace_id: string }>`with ${scope}
        select found.workspace_id from scope cross join lateral (
          select c.workspace_id from cordon_records_containing_rows('Task', array['{"d2": 0}']::jsonb[], ${maxRows}::integer) c
          offset 0) found`,
    );

  it('returns rows of the scope’s workspace only, and none outside a scope', async () => {
    const rows = await candidates(workspaces[1]!, total);
    expect(rows).toHaveLength(total / 2);
    expect(new Set(rows.map((row) => row.workspace_id))).toEqual(new Set([workspaces[1]]));
    expect(await candidates(null, total)).toEqual([]);
    const [outside] = await database.query(
      sql<{
        rows: string;
      }>`select count(*) as rows from cordon_records_containing_rows('Task', array['{"d2": 0}']::jsonb[], 1000)`,
    );
    expect(outside).toEqual({ rows: '0' });
  });

  it('returns no more rows than it is asked for', async () => {
    expect(await candidates(workspaces[0]!, 7)).toHaveLength(7);
  });
});

interface PlanNode {
  'Node Type': string;
  'Parent Relationship'?: string;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

/** Whether a node below `node` (not counting the guards' init plans) ran. */
const ran = (node: PlanNode): boolean =>
  (node.Plans ?? []).some(
    (child) => child['Parent Relationship'] !== 'InitPlan' && ((child['Actual Loops'] ?? 0) > 0 || ran(child)),
  );

/** The first page's step, read off the plan PostgreSQL ran: which branches of the steps' union executed. */
async function stepTaken(shape: Shape): Promise<Step> {
  const { page } = listed(shape, workspaces[0]!);
  const [row] = await database.inWorkspace(
    workspaces[0]!,
    (scope) =>
      sql<{
        'QUERY PLAN': { Plan: PlanNode }[];
      }>`explain (analyze, format json) ${pageStatement('Task', page, undefined, depths)(scope)}`,
  );
  const find = (node: PlanNode): PlanNode | undefined =>
    node['Node Type'] === 'Append'
      ? node
      : (node.Plans ?? [])
          .filter((child) => child['Parent Relationship'] !== 'InitPlan')
          .map(find)
          .find(Boolean);
  const branches = find(row!['QUERY PLAN'][0]!.Plan)!.Plans!;
  expect(branches).toHaveLength(4);
  const [probe, walk, index, scan] = branches.map(ran);
  if (walk) return 'walk';
  if (index) return 'index';
  if (scan) return 'scan';
  expect(probe).toBe(true);
  return 'probe';
}
