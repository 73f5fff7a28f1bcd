import express, { type Express } from 'express';
import type { Logger } from 'pino';
import { requirePlatformAdmin } from './auth/admin.ts';
import type { Config } from './config.ts';
import type { Orm } from './db/orm.ts';
import { workspaceRoutes } from './features/workspaces/workspaces.routes.ts';
import { WorkspacesService } from './features/workspaces/workspaces.service.ts';
import { Api } from './http/api.ts';
import { parseJsonBody, requireJsonBody } from './http/body.ts';
import { healthRoutes } from './http/health.ts';
import { requestLogging } from './http/logging.ts';
import { createMetrics } from './http/metrics.ts';
import { openApiDocument } from './http/openapi.ts';
import { notFound, problemHandler } from './http/problems.ts';

export interface AppDependencies {
  config: Pick<Config, 'bodyLimit' | 'trustProxy'> & { adminApiKey: string };
  orm: Orm;
  logger: Logger;
}

export const apiVersion = '0.1.0';

/** Builds the Express app; never listens, so tests and main.ts share it. */
export function createApp({ config, orm, logger }: AppDependencies): { app: Express; api: Api } {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');

  const metrics = createMetrics();
  app.use(requestLogging(logger));
  app.use(metrics.middleware);
  app.use((_request, response, next) => {
    response.setHeader('X-Content-Type-Options', 'nosniff');
    response.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(requireJsonBody, parseJsonBody(config.bodyLimit));

  const api = new Api(app, { admin: [requirePlatformAdmin(config.adminApiKey)], bearer: [], none: [] });
  let document: unknown;
  healthRoutes(api, orm, metrics, () => (document ??= openApiDocument(api.routes, apiVersion)));
  workspaceRoutes(api, new WorkspacesService(orm));

  app.use(notFound);
  app.use(problemHandler);
  return { app, api };
}
