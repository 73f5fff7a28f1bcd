import {
  IsolationLevel,
  MikroORM,
  type AnyEntity,
  type EntityClass,
  type EntityManager,
  type EntitySchema,
} from '@mikro-orm/postgresql';
import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect, sql, type PostgresPool, type RawBuilder } from 'kysely';
import pg from 'pg';
import Cursor from 'pg-cursor';
import type { Logger } from 'pino';

/**
 * The one road to the database. One pool per instance, sized by DATABASE_POOL_SIZE, shared by
 * MikroORM (entities of configuration tables) and every hand-written statement, which is a Kysely
 * `sql` template: values travel as bound parameters, never formatted into the SQL text.
 *
 * Tenant rows are reached only inside a workspace's row-level-security scope, set by
 * `withWorkspace` (a transaction) or `inWorkspace` (a single statement that sets the scope itself,
 * one round trip for the hot paths). Outside a scope the policies show no tenant row at all.
 */

export type Sql = Kysely<Record<string, never>>;
export type Statement<Row> = RawBuilder<Row>;
type Entities = (string | EntityClass<AnyEntity> | EntitySchema)[];

const preparedMarker = '/* prepared ';

/**
 * A statement whose text never varies, planned once per connection and reused: measured 2× the
 * throughput of the same statement parsed and planned on every call (single-record reads).
 * Statements whose text depends on the request (list filters) must not be marked.
 */
export function prepared<Row>(name: string, statement: Statement<Row>): Statement<Row> {
  if (!/^cordon_[a-z_]+$/.test(name)) throw new Error(`Invalid prepared statement name "${name}"`);
  // A comment, not a value: the name was checked above and PostgreSQL ignores it.
  // eslint-disable-next-line no-restricted-syntax
  return sql<Row>`${sql.raw(`${preparedMarker}${name} */`)} ${statement}`;
}

const byTextMarker = '/* text-prepared */';
/** The most statements one connection prepares by their text; it runs later texts unprepared. */
export const maxTextStatements = 64;

/**
 * A statement whose text takes shapes that repeat (a list page: its sort, cursor, filter and the
 * principal's read rules shape it, its values are parameters), prepared under a name made from
 * its text. A connection prepares the first `maxTextStatements` texts it meets and runs the
 * others unprepared, so texts that never repeat cannot fill a backend's memory (or a pooler's:
 * nothing is deallocated, which PgBouncer would not see). The pool closes a connection idle for
 * 10 s, and its successor starts afresh.
 */
export function preparedByText<Row>(statement: Statement<Row>): Statement<Row> {
  // A comment, not a value: PostgreSQL ignores it.
  // eslint-disable-next-line no-restricted-syntax
  return sql<Row>`${sql.raw(byTextMarker)} ${statement}`;
}

type Query = (config: unknown, values?: unknown, callback?: unknown) => unknown;

/** Gives a marked statement its name, so `pg` prepares it once on each connection. */
function namePreparedStatements(client: pg.ClientBase): void {
  const query = client.query.bind(client) as Query;
  /** Names of the statements this connection prepared by their text. */
  const byText = new Set<string>();
  const nameByText = (text: string): string | undefined => {
    const name = `cordon_text_${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
    if (byText.has(name)) return name;
    if (byText.size >= maxTextStatements) return undefined;
    byText.add(name);
    return name;
  };
  client.query = ((config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && config.startsWith(preparedMarker)) {
      const name = config.slice(preparedMarker.length, config.indexOf(' */'));
      return query({ name, text: config, values }, callback);
    }
    if (typeof config === 'string' && config.startsWith(byTextMarker)) {
      const name = nameByText(config);
      return name ? query({ name, text: config, values }, callback) : query(config, values, callback);
    }
    return query(config, values, callback);
  }) as typeof client.query;
}

/**
 * A connection that breaks inside a transaction is given back to the pool (and discarded by it)
 * when it breaks: Kysely releases a transaction's connection only after a successful commit or
 * rollback, so a connection killed mid-transaction would otherwise stay checked out for ever,
 * and a database restart would shrink the pool by one per transaction in flight.
 */
function releasedOnError(pool: pg.Pool): PostgresPool {
  return {
    connect: async () => {
      const client = await pool.connect();
      const release = client.release;
      let held = true;
      const giveBack = (error?: Error | boolean) => {
        if (!held) return;
        held = false;
        client.off('error', broken);
        release(error);
      };
      const broken = (error: Error) => giveBack(error);
      client.on('error', broken);
      client.release = giveBack;
      return client;
    },
    end: () => pool.end(),
    options: pool.options,
  };
}

/** A transaction: its ORM entity manager and its SQL, bound to the transaction's connection. */
export class Transaction {
  readonly em: EntityManager;
  readonly sql: Sql;

  constructor(em: EntityManager) {
    this.em = em;
    this.sql = em.getKysely() as unknown as Sql;
  }

  async query<Row>(statement: Statement<Row>): Promise<Row[]> {
    return (await statement.execute(this.sql)).rows;
  }

  /** How many rows `from` selects: a table and its conditions, as a list's `count=true` asks. */
  async count(from: RawBuilder<unknown>): Promise<number> {
    const [row] = await this.query(sql<{ count: string }>`select count(*) from ${from}`);
    return Number(row?.count ?? 0);
  }

  /**
   * Enters a workspace's scope for the rest of this transaction (a new workspace's first rows,
   * written in the transaction that creates it). `withWorkspace` is the usual way in.
   */
  async enter(workspaceId: string): Promise<Scope> {
    await this.query(sql`select set_config('cordon.workspace_id', ${workspaceId}::text, true)`);
    return new Scope(this.em, workspaceId);
  }

  /** Rows in chunks from a server-side cursor: memory stays flat however many there are. */
  async *stream<Row>(statement: Statement<Row>, chunkSize = 1_000): AsyncGenerator<Row[]> {
    for await (const result of this.sql.getExecutor().stream(statement.compile(this.sql), chunkSize)) {
      yield result.rows as Row[];
    }
  }
}

/** A transaction inside one workspace's row-level-security scope. */
export class Scope extends Transaction {
  readonly workspaceId: string;
  /** The `scope` CTE of statements shared with `inWorkspace`; here the setting is already in force. */
  readonly cte: Statement<unknown>;

  constructor(em: EntityManager, workspaceId: string) {
    super(em);
    this.workspaceId = workspaceId;
    this.cte = sql`scope as (select ${workspaceId}::uuid as workspace_id)`;
  }
}

/**
 * Sets the scope inside one statement: `with ${scope} select … from scope cross join lateral (…)`.
 * A statement must read tenant rows only through something that depends on `scope` (a LATERAL
 * subquery with `offset 0`, or INSERT … SELECT FROM scope), so the setting is in force before
 * PostgreSQL evaluates the policy; were it not, the policy compares with NULL and the statement
 * sees nothing — the failure is closed, never a leak.
 */
const scopeOf = (workspace: string | null | Statement<unknown>) => {
  const id = typeof workspace === 'string' || workspace === null ? sql`${workspace}::text` : sql`(${workspace})::text`;
  return sql`scope as materialized (select nullif(set_config('cordon.workspace_id', coalesce(${id}, ''), true), '')::uuid as workspace_id)`;
};

interface DatabaseState {
  closing: boolean;
  lost: Set<() => void>;
}

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  entities: Entities;
}

export class Database {
  readonly orm: MikroORM;
  /** The instance's one pool; the job queue (events/queue.ts) runs its workers on it too. */
  readonly pool: pg.Pool;
  private readonly kysely: Sql;
  private readonly state: DatabaseState;

  private constructor(orm: MikroORM, pool: pg.Pool, kysely: Sql, state: DatabaseState) {
    this.orm = orm;
    this.pool = pool;
    this.kysely = kysely;
    this.state = state;
  }

  /**
   * Connects as the serving role, which owns no table, so RLS always applies. Waiting for a free
   * connection is bounded: running out is a 503, never a request that hangs. A connection the
   * server drops (restart, failover, idle timeout) is an `'error'` event, and one without a
   * listener would take the process down: the pool discards it and we log.
   */
  static async open(options: DatabaseOptions, logger: Logger): Promise<Database> {
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize,
      connectionTimeoutMillis: 5_000,
    });
    const state: DatabaseState = { closing: false, lost: new Set() };
    // Once the pool is closing, a connection cut by a server that stops at once is expected.
    const dropped = (error: Error) => {
      if (state.closing) return;
      logger.warn({ code: (error as { code?: string }).code }, `PostgreSQL connection dropped: ${error.message}`);
      for (const listener of state.lost) listener();
    };
    pool.on('error', dropped);
    pool.on('connect', (client) => {
      client.on('error', dropped);
      namePreparedStatements(client);
    });
    const dialect = new PostgresDialect({ pool: releasedOnError(pool), cursor: Cursor });
    const orm: MikroORM = await MikroORM.init({
      clientUrl: options.url,
      entities: options.entities,
      driverOptions: dialect,
      allowGlobalContext: false,
      logger: (message) => logger.trace(message),
    });
    return new Database(orm, pool, orm.em.getKysely() as unknown as Sql, state);
  }

  /**
   * Called whenever a connection is dropped (a restart, a failover): what was learned from the
   * database's state may no longer hold.
   */
  onConnectionLost(listener: () => void): void {
    this.state.lost.add(listener);
  }

  /**
   * Several statements in one transaction inside the workspace's scope. `snapshot`: every
   * statement sees the same snapshot (REPEATABLE READ), for a read that must be consistent across
   * tables (an export).
   */
  withWorkspace<T>(
    workspaceId: string,
    work: (scope: Scope) => Promise<T>,
    options: { readOnly?: boolean; snapshot?: boolean } = {},
  ): Promise<T> {
    return this.orm.em.fork().transactional(async (em) => work(await new Transaction(em).enter(workspaceId)), {
      readOnly: options.readOnly ?? false,
      ...(options.snapshot && { isolationLevel: IsolationLevel.REPEATABLE_READ }),
    });
  }

  /**
   * One statement in its own implicit transaction, with the scope set by the statement itself
   * (see `scopeOf`): one round trip. The workspace is an id, or a query for one (a slug's); none
   * is an empty scope, in which no tenant row exists.
   */
  async inWorkspace<Row>(
    workspaceId: string | null | Statement<unknown>,
    statement: (scope: Statement<unknown>) => Statement<Row>,
  ): Promise<Row[]> {
    return this.single(statement(scopeOf(workspaceId)));
  }

  /** Platform rows (workspaces, signing keys) in one transaction; tenant rows stay invisible. */
  outsideWorkspaces<T>(work: (transaction: Transaction) => Promise<T>): Promise<T> {
    return this.orm.em.fork().transactional(async (em) => work(new Transaction(em)));
  }

  /** One statement outside every workspace (readiness, definer functions that return ids only). */
  query<Row>(statement: Statement<Row>): Promise<Row[]> {
    return this.single(statement);
  }

  /**
   * A single statement goes to a pool connection as Kysely compiled it, without Kysely's executor
   * around it (plugins, a query id, a connection provider): measured 33 against 45 µs of CPU per
   * statement on the hot reads. The values stay bound parameters either way.
   */
  private async single<Row>(statement: Statement<Row>): Promise<Row[]> {
    const { sql: text, parameters } = statement.compile(this.kysely);
    const client = await this.pool.connect();
    try {
      return (await client.query<Row & pg.QueryResultRow>(text, parameters as unknown[])).rows;
    } finally {
      // A connection that broke is not queryable any more, and the pool discards it.
      client.release();
    }
  }

  async close(): Promise<void> {
    this.state.closing = true;
    await this.orm.close(true);
  }
}
