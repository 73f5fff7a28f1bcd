import { createMongoAbility, subject, type MongoAbility } from '@casl/ability';
import express, { type Express } from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';

/**
 * The pattern teams write themselves, as the benchmark's baseline: Express, a jose JWT check, a
 * CASL middleware building the ability from the token's role, and raw `pg` queries filtered by
 * `WHERE workspace_id = $1`. No decision log, no row-level security, no list filtering by policy.
 */
/** Connections each side of the records comparison may use: Cordon's default DATABASE_POOL_SIZE. */
export const baselinePoolSize = 10;

export function baselineRecordsApp(options: {
  databaseUrl: string;
  issuer: string;
  jwksUri: string;
  workspaceId: string;
}): { app: Express; close: () => Promise<void> } {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: baselinePoolSize });
  // A connection the bench's database drops when it stops must not take the bench down.
  pool.on('error', () => undefined);
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const abilities = new Map<string, MongoAbility>([
    ['member', createMongoAbility([{ action: ['create', 'read', 'update'], subject: 'all' }])],
  ]);
  const app = express();
  app.use(express.json());
  app.use(async (request, response, next) => {
    try {
      const token = request.headers.authorization?.replace(/^Bearer /, '') ?? '';
      const { payload } = await jwtVerify(token, jwks, { issuer: options.issuer });
      const role = (payload.o as { rol?: string } | undefined)?.rol ?? '';
      response.locals.ability = abilities.get(role) ?? createMongoAbility([]);
      response.locals.userId = payload.sub;
      next();
    } catch {
      response.status(401).json({ error: 'unauthorized' });
    }
  });
  const columns = 'id, data, created_by as "createdBy", created_at as "createdAt", updated_at as "updatedAt", version';
  app.get('/records/:structure', async (request, response) => {
    if (!(response.locals.ability as MongoAbility).can('read', request.params.structure))
      return void response.status(403).end();
    const { rows } = await pool.query(
      `select ${columns} from records where workspace_id = $1 and structure = $2 order by created_at desc, id desc limit $3`,
      [options.workspaceId, request.params.structure, Number(request.query.limit ?? 50)],
    );
    response.json({ data: rows });
  });
  app.get('/records/:structure/:id', async (request, response) => {
    const { rows } = await pool.query(`select ${columns} from records where workspace_id = $1 and id = $2`, [
      options.workspaceId,
      request.params.id,
    ]);
    if (!rows[0]) return void response.status(404).end();
    if (!(response.locals.ability as MongoAbility).can('read', subject(request.params.structure, { ...rows[0].data })))
      return void response.status(403).end();
    response.json(rows[0]);
  });
  app.post('/records/:structure', async (request, response) => {
    if (
      !(response.locals.ability as MongoAbility).can(
        'create',
        subject(request.params.structure, { ...request.body.data }),
      )
    )
      return void response.status(403).end();
    const { rows } = await pool.query(
      `insert into records (id, workspace_id, structure, data, created_by) values ($1, $2, $3, $4, $5) returning ${columns}`,
      [uuidv7(), options.workspaceId, request.params.structure, request.body.data, response.locals.userId],
    );
    response.status(201).json(rows[0]);
  });
  return { app, close: () => pool.end() };
}
