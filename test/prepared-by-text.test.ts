import { sql } from 'kysely';
import { pino } from 'pino';
import { entities } from '../src/app.ts';
import { Database, maxTextStatements, preparedByText } from '../src/db/database.ts';
import { testDatabase } from './support/app.ts';

/**
 * Statements prepared by their text (list pages): one connection keeps the last
 * `maxTextStatements` of them and deallocates the others, and a text whose statement was
 * deallocated runs again (prepared anew) instead of failing.
 */

let database: Database;

beforeAll(async () => {
  // One connection: every statement below meets the ones prepared before it.
  database = await Database.open({ url: testDatabase.appUrl(), poolSize: 1, entities }, pino({ level: 'silent' }));
});
afterAll(async () => {
  await database.close();
});

/** A text of its own for each n (a literal, not a parameter), and a parameter beside it. */
const shaped = (n: number, value: number) =>
  preparedByText(sql<{ shape: number; value: number }>`select ${sql.lit(n)}::int as shape, ${value}::int as value`);

const preparedHere = async () =>
  (
    await database.query(
      sql<{ names: string[] }>`select coalesce(array_agg(name::text), '{}') as names from pg_prepared_statements
        where name like 'cordon_text_%'`,
    )
  )[0]!.names;

describe('statements prepared by their text', () => {
  it('are prepared once per connection and reused with other values', async () => {
    expect(await database.query(shaped(-1, 1))).toEqual([{ shape: -1, value: 1 }]);
    const [name] = await preparedHere();
    expect(name).toMatch(/^cordon_text_[0-9a-f]{32}$/);
    expect(await database.query(shaped(-1, 2))).toEqual([{ shape: -1, value: 2 }]);
    expect(await preparedHere()).toEqual([name]);
  });

  it('keep at most the last maxTextStatements on a connection, and run an evicted text again', async () => {
    const shapes = maxTextStatements * 3;
    for (let n = 0; n < shapes; n += 1) expect(await database.query(shaped(n, n))).toEqual([{ shape: n, value: n }]);
    // The deallocations are queued behind the statements that evicted them: one more round trip sees them done.
    await database.query(sql`select 1`);
    expect((await preparedHere()).length).toBeLessThanOrEqual(maxTextStatements);
    // The first shapes were deallocated long ago; they run (and are prepared) again.
    for (let n = 0; n < 3; n += 1)
      expect(await database.query(shaped(n, n + 100))).toEqual([{ shape: n, value: n + 100 }]);
    expect((await preparedHere()).length).toBeLessThanOrEqual(maxTextStatements);
  });
});
