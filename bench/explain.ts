import { sql } from 'kysely';
import pg from 'pg';
import { entities } from '../src/app.ts';
import { Database } from '../src/db/database.ts';
import { buildAbility, type PolicyRule } from '../src/policy/ability.ts';
import { parseConditions } from '../src/policy/conditions.ts';
import {
  bothContained,
  containmentDocuments,
  recordCondition,
  rulesCondition,
  rulesContainment,
} from '../src/policy/sql-filter.ts';
import { afterCursor, listFingerprint, orderBy, parseSort, sortColumns } from '../src/features/records/list-query.ts';
import { pageStatement } from '../src/features/records/record-store.ts';
import { pino } from 'pino';
import { encodeCursor } from '../src/http/cursor.ts';
import { benchDatabase } from './database.ts';
import { benchRecordCount, seedTasks } from './records.ts';

/**
 * `npm run bench:explain`: the plans PostgreSQL picks for the common list shapes on a workspace
 * of 100k records (beside another of 100k), built by the same code the records service uses and
 * run as the serving role, row-level security included.
 */
const database = await benchDatabase();
const owner = new pg.Client({ connectionString: database.ownerUrl });
await owner.connect();
const workspaces = ['0192f3a4-0000-7000-8000-00000000000a', '0192f3a4-0000-7000-8000-00000000000b'];
for (const [index, id] of workspaces.entries()) {
  await owner.query('insert into workspaces (id, slug, name) values ($1, $2, $3)', [id, `explain-${index}`, 'Explain']);
  await owner.query(
    `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title":{"type":"text"},"status":{"type":"text"},"priority":{"type":"integer"},"assignee":{"type":"text"}}')`,
    [id],
  );
  await seedTasks(database.ownerUrl, id, benchRecordCount);
}
await owner.end();
const serving = await Database.open({ url: database.appUrl, poolSize: 1, entities }, pino({ level: 'warn' }));
const workspaceId = workspaces[0]!;
const fieldNames = ['title', 'status', 'priority', 'assignee'];

const roles: Record<string, PolicyRule[]> = {
  member: [{ action: 'read', subject: 'Task' }],
  contractor: [{ action: 'read', subject: 'Task', conditions: { assignee: '${principal.id}' } }],
  open: [{ action: 'read', subject: 'Task', conditions: { status: { $in: ['todo', 'doing'] } } }],
  'no-done': [
    { action: 'read', subject: 'Task' },
    { action: 'read', subject: 'Task', inverted: true, conditions: { status: 'done' } },
  ],
};
const shapes: { name: string; role: string; sort?: string; filter?: unknown; cursorAt?: unknown[] }[] = [
  { name: 'default sort (-createdAt), unconditional read', role: 'member' },
  {
    name: 'page 2 by cursor, default sort',
    role: 'member',
    cursorAt: ['2000-01-01T00:00:00.000Z', 'ffffffff-ffff-4fff-bfff-ffffffffffff'],
  },
  { name: 'filter {status: "done"}', role: 'member', filter: { status: 'done' } },
  { name: 'selective filter {title: "Task 777"} (1 row)', role: 'member', filter: { title: 'Task 777' } },
  {
    name: 'selective filter {title: "Task 777"}, sorted by title (no GIN branch)',
    role: 'member',
    filter: { title: 'Task 777' },
    sort: 'title',
  },
  {
    name: 'filter {title: {$in: ["Task 7", "Task 99999"]}} (2 rows)',
    role: 'member',
    filter: { title: { $in: ['Task 7', 'Task 99999'] } },
  },
  {
    name: 'filter {status: "done"}, page 2 by cursor',
    role: 'member',
    filter: { status: 'done' },
    cursorAt: ['2100-01-01T00:00:00.000Z', 'ffffffff-ffff-4fff-bfff-ffffffffffff'],
  },
  { name: 'policy {assignee: principal.id} (1 in 50 rows)', role: 'contractor' },
  {
    name: 'policy deny {status: "done"}, filter {priority: {$gte: 4}}',
    role: 'no-done',
    filter: { priority: { $gte: 4 } },
  },
  {
    name: 'policy {assignee: principal.id}, filter {status: "done"} (1 in 150 rows)',
    role: 'contractor',
    filter: { status: 'done' },
  },
  {
    name: 'policy {assignee: principal.id}, filter {priority: {$gte: 4}} (no row)',
    role: 'contractor',
    filter: { priority: { $gte: 4 } },
  },
  {
    name: 'policy {status: {$in: ["todo", "doing"]}} (2 in 3), filter {priority: {$gte: 6}} (no row)',
    role: 'open',
    filter: { priority: { $gte: 6 } },
  },
  { name: 'sort by a data field (priority, title)', role: 'member', sort: 'priority,title' },
];

for (const shape of shapes) {
  const ability = buildAbility(
    [
      {
        id: '0192f3a4-0000-7000-8000-000000000001',
        name: shape.role,
        version: 1,
        roles: ['r'],
        rules: roles[shape.role]!,
      },
    ],
    { principal: { id: 'user_7', roles: ['r'], claims: {} }, workspaceId },
  );
  const keys = parseSort(shape.sort ?? '-createdAt', fieldNames);
  const rules = ability.rulesFor('read', 'Task');
  let where = rulesCondition(rules);
  const filter = shape.filter ? parseConditions(shape.filter, '').condition! : undefined;
  if (filter) where = sql`${where} and ${recordCondition(filter)}`;
  let after;
  if (shape.cursorAt) {
    const fingerprint = listFingerprint(workspaceId, 'Task', shape.sort ?? '-createdAt', undefined);
    after = afterCursor(encodeCursor({ q: fingerprint, k: shape.cursorAt }), fingerprint, keys);
  }
  // As listPage decides: candidates from the GIN index only for the index's order.
  const documents = bothContained(filter && containmentDocuments(filter), rulesContainment(rules));
  const containing = shape.sort || !documents ? undefined : { documents, descending: true };
  const statement = pageStatement('Task', {
    where,
    after,
    columns: sortColumns(keys),
    orderBy: orderBy(keys),
    limit: 51,
    containing,
  });
  const rows = await serving.inWorkspace(
    workspaceId,
    (scope) => sql<{ 'QUERY PLAN': string }>`explain (analyze, costs off, summary on) ${statement(scope)}`,
  );
  console.log(`\n### ${shape.name}\n${rows.map((row) => row['QUERY PLAN']).join('\n')}`);
}
await serving.close();
await database.stop();
