import { sql } from 'kysely';
import { pino } from 'pino';
import { entities } from '../src/app.ts';
import { Database, maxTextStatements, preparedByText } from '../src/db/database.ts';
import { testDatabase } from './support/app.ts';

/**
 * Statements prepared by their text (list pages): a connection prepares the first
 * `maxTextStatements` texts it meets, reuses them, and runs later texts unprepared.
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
      sql<{
        names: string[];
      }>`select coalesce(array_agg(name::text order by name), '{}') as names from pg_prepared_statements
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

  it('prepare at most maxTextStatements texts on a connection, and run later ones unprepared', async () => {
    const first = await preparedHere();
    for (let n = 0; n < maxTextStatements * 3; n += 1)
      expect(await database.query(shaped(n, n))).toEqual([{ shape: n, value: n }]);
    const prepared = await preparedHere();
    expect(prepared).toHaveLength(maxTextStatements);
    // The ones prepared first stay, and serve their text again.
    expect(prepared).toEqual(expect.arrayContaining(first));
    expect(await database.query(shaped(-1, 3))).toEqual([{ shape: -1, value: 3 }]);
    expect(await database.query(shaped(maxTextStatements * 3 - 1, 4))).toEqual([
      { shape: maxTextStatements * 3 - 1, value: 4 },
    ]);
    expect(await preparedHere()).toEqual(prepared);
  });
});
