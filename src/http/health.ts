import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { Drain } from './drain.ts';
import type { Api } from './api.ts';
import { ProblemError } from './errors.ts';
import type { Metrics } from './metrics.ts';
import { z } from 'zod';

const status = z.object({ status: z.literal('ok') });

export function healthRoutes(
  api: Api,
  database: Database,
  metrics: Metrics,
  drain: Drain,
  openApi: () => unknown,
): void {
  api.route(
    {
      method: 'get',
      path: '/healthz',
      summary: 'Liveness: the process is up',
      tag: 'Operations',
      security: 'none',
      responses: { 200: { description: 'Up', schema: status } },
    },
    (_input, _request, response) => {
      response.json({ status: 'ok' });
    },
  );

  api.route(
    {
      method: 'get',
      path: '/readyz',
      summary: 'Readiness: not stopping, and the database answers',
      tag: 'Operations',
      security: 'none',
      responses: {
        200: { description: 'Ready', schema: status },
        503: { description: 'Stopping (`shutting_down`), or the database unreachable (`database_unavailable`)' },
      },
    },
    async (_input, _request, response) => {
      if (drain.draining) throw new ProblemError('shutting_down', 'This instance is stopping');
      const reachable = await Promise.race([
        database.query(sql`select 1`).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => setTimeout(resolve, 2_000, false).unref()),
      ]);
      if (!reachable) throw new ProblemError('database_unavailable', 'The database did not answer');
      response.json({ status: 'ok' });
    },
  );

  api.route(
    {
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      tag: 'Operations',
      security: 'admin',
      responses: { 200: { description: 'Prometheus text format', schema: z.string(), contentType: 'text/plain' } },
    },
    async (_input, _request, response) => {
      response.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );

  api.route(
    {
      method: 'get',
      path: '/openapi.json',
      summary: 'This API, described in OpenAPI 3.1',
      tag: 'Operations',
      security: 'none',
      responses: { 200: { description: 'The document' } },
    },
    (_input, _request, response) => {
      response.json(openApi());
    },
  );
}
