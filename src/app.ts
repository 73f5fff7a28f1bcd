import express, { type Express } from 'express';
import type { Logger } from 'pino';
import { requirePlatformAdmin } from './auth/admin.ts';
import { Authenticator } from './auth/authenticate.ts';
import { KeySets } from './auth/key-sets.ts';
import { VerifiedTokenCache } from './auth/token-cache.ts';
import { TokenVerifier } from './auth/tokens.ts';
import { WorkspaceDirectory } from './auth/workspace-directory.ts';
import type { Config } from './config.ts';
import type { ChangeBus } from './db/changes.ts';
import type { Orm } from './db/orm.ts';
import { identityProviderRoutes } from './features/identity-providers/identity-providers.routes.ts';
import { IdentityProvidersService } from './features/identity-providers/identity-providers.service.ts';
import { whoamiRoutes } from './features/whoami/whoami.routes.ts';
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
  config: Pick<Config, 'env' | 'bodyLimit' | 'trustProxy' | 'auth'> & { adminApiKey: string };
  orm: Orm;
  changes: ChangeBus;
  logger: Logger;
}

export const apiVersion = '0.1.0';

export const keySetOptions = (config: Pick<Config, 'auth'>) => ({
  allowPrivateNetworks: config.auth.allowPrivateNetworks,
  timeoutMs: config.auth.jwksTimeoutMs,
  cooldownMs: config.auth.jwksCooldownMs,
  maxAgeMs: config.auth.jwksCacheMs,
  maxBytes: config.auth.jwksMaxBytes,
});

/** The shared pieces of the front door, built once per app. */
export function createAuthenticator({ config, orm, changes }: Pick<AppDependencies, 'config' | 'orm' | 'changes'>): Authenticator {
  const keySets = new KeySets(keySetOptions(config));
  const directory = new WorkspaceDirectory(orm, changes);
  const verifier = new TokenVerifier(keySets, new VerifiedTokenCache(config.auth.tokenCacheSize));
  return new Authenticator(directory, verifier, orm);
}

/** Builds the Express app; never listens, so tests and main.ts share it. */
export function createApp(dependencies: AppDependencies): { app: Express; api: Api } {
  const { config, orm, changes, logger } = dependencies;
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

  const authenticator = createAuthenticator(dependencies);
  const api = new Api(app, {
    admin: [requirePlatformAdmin(config.adminApiKey)],
    bearer: [authenticator.guard()],
    none: [],
  });
  const workspaces = new WorkspacesService(orm, changes);
  let document: unknown;
  healthRoutes(api, orm, metrics, () => (document ??= openApiDocument(api.routes, apiVersion)));
  workspaceRoutes(api, workspaces);
  identityProviderRoutes(api, new IdentityProvidersService(orm, workspaces, changes), config.env === 'production');
  whoamiRoutes(api);

  app.use(notFound);
  app.use(problemHandler);
  return { app, api };
}
