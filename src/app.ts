import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import { adminKeyDigest, bearerToken, isPlatformAdminKey, requirePlatformAdmin } from './auth/admin.ts';
import { Authenticator } from './auth/authenticate.ts';
import type { DevIssuerKey } from './auth/dev-issuer.ts';
import { KeySets } from './auth/key-sets.ts';
import { VerifiedTokenCache } from './auth/token-cache.ts';
import { TokenVerifier } from './auth/tokens.ts';
import { WorkspaceDirectory } from './auth/workspace-directory.ts';
import type { Config } from './config.ts';
import type { ChangeBus } from './db/changes.ts';
import type { Database, Scope } from './db/database.ts';
import { checkRoutes } from './features/check/check.routes.ts';
import { consoleRoutes } from './features/console/console.routes.ts';
import { DecisionReader } from './features/decisions/decision-reader.ts';
import { decisionRoutes } from './features/decisions/decisions.routes.ts';
import { devIssuerRoutes } from './features/dev-issuer/dev-issuer.routes.ts';
import type { SigningKey } from './features/decisions/signing.ts';
import { identityProviderRoutes } from './features/identity-providers/identity-providers.routes.ts';
import { IdentityProvidersService } from './features/identity-providers/identity-providers.service.ts';
import { policyRoutes } from './features/policies/policies.routes.ts';
import { policyTestRoutes } from './features/policy-tests/policy-tests.routes.ts';
import { PolicyTestsService } from './features/policy-tests/policy-tests.service.ts';
import { whatIfRoutes } from './features/what-if/what-if.routes.ts';
import { WhatIfService } from './features/what-if/what-if.service.ts';
import { PolicyEntity } from './features/policies/policy.entity.ts';
import { IdentityProviderEntity } from './features/identity-providers/identity-provider.entity.ts';
import { StructureEntity } from './features/structures/structure.entity.ts';
import { FunctionApi } from './features/functions/function-api.ts';
import { FunctionCatalog } from './features/functions/function-catalog.ts';
import { FunctionEntity } from './features/functions/function.entity.ts';
import { FunctionRunner } from './features/functions/function-runner.ts';
import { FunctionRuns } from './features/functions/function-runs.ts';
import { functionRoutes } from './features/functions/functions.routes.ts';
import { FunctionsService } from './features/functions/functions.service.ts';
import { SandboxPool, type SandboxPoolOptions } from './features/functions/sandbox-pool.ts';
import { WorkspaceEntity } from './features/workspaces/workspace.entity.ts';
import { RealtimeHub, type RealtimeOptions } from './features/realtime/realtime-hub.ts';
import { realtimeRoutes } from './features/realtime/realtime.routes.ts';
import { TriggerEntity } from './features/triggers/trigger.entity.ts';
import { triggerRoutes } from './features/triggers/triggers.routes.ts';
import { TriggersService } from './features/triggers/triggers.service.ts';
import { EventLog } from './events/event-log.ts';
import { EventSecrets } from './events/secrets.ts';
import { invitationRoutes } from './features/invitations/invitations.routes.ts';
import { InvitationsService } from './features/invitations/invitations.service.ts';
import { memberRoutes } from './features/members/members.routes.ts';
import { MembersService } from './features/members/members.service.ts';
import { RecordStore } from './features/records/record-store.ts';
import { recordRoutes } from './features/records/records.routes.ts';
import { RecordsService } from './features/records/records.service.ts';
import { LimitHeadroom } from './features/records/record-limits.ts';
import { StructureCatalog } from './features/structures/structure-catalog.ts';
import { structureRoutes } from './features/structures/structures.routes.ts';
import { StructuresService } from './features/structures/structures.service.ts';
import { PoliciesService } from './features/policies/policies.service.ts';
import { whoamiRoutes } from './features/whoami/whoami.routes.ts';
import { lifecycleRoutes } from './features/lifecycle/lifecycle.routes.ts';
import { LifecycleService } from './features/lifecycle/lifecycle.service.ts';
import { Templates } from './features/lifecycle/templates.ts';
import { TriggerSecrets } from './features/triggers/trigger-secrets.ts';
import { workspaceRoutes } from './features/workspaces/workspaces.routes.ts';
import { WorkspacesService } from './features/workspaces/workspaces.service.ts';
import { Api } from './http/api.ts';
import { parseJsonBody, requireJsonBody } from './http/body.ts';
import { Drain } from './http/drain.ts';
import { healthRoutes } from './http/health.ts';
import { requestLogging } from './http/logging.ts';
import { createMetrics } from './http/metrics.ts';
import { openApiDocument } from './http/openapi.ts';
import { notFound, problemHandler } from './http/problems.ts';
import { AccessControl } from './policy/access.ts';
import { Plans } from './policy/plans.ts';
import { UsageMeter } from './policy/usage-meter.ts';
import { billingRoutes } from './features/billing/billing.routes.ts';
import { BillingService } from './features/billing/billing.service.ts';
import { BillingJobs } from './features/billing/billing-jobs.ts';
import { OperatorMetrics } from './features/billing/operator-metrics.ts';
import { StripeBilling } from './features/billing/stripe-billing.service.ts';
import { StripeCatalog } from './features/billing/stripe-catalog.ts';
import { createStripe } from './features/billing/stripe-client.ts';
import { SubscriptionSync } from './features/billing/subscription-sync.ts';
import { PolicyStore } from './policy/policy-store.ts';

export interface AppDependencies {
  config: Pick<
    Config,
    'env' | 'bodyLimit' | 'trustProxy' | 'auth' | 'invitations' | 'events' | 'realtime' | 'billing'
  > & {
    adminApiKey: string;
  };
  database: Database;
  changes: ChangeBus;
  logger: Logger;
  signingKey: SigningKey;
  /** Only the benchmark turns the decision log off, to measure what it costs. */
  logDecisions?: boolean;
  /** The event log's in-process news of commits, shared with this instance's consumers. */
  events?: EventLog;
  /** Function sandboxes (tests make them misbehave). */
  sandbox?: Partial<SandboxPoolOptions>;
  /** Event streams' timings and evaluation (tests shorten the heartbeat, or make one evaluation fail). */
  realtime?: Partial<RealtimeOptions>;
  /** The development issuer's key (main.ts keeps it in DATA_DIR); ignored in production. */
  devIssuer?: DevIssuerKey;
  /** The plans (main.ts loads them before anything starts); read from config.billing.plansFile when absent. */
  plans?: Plans;
  /** Only the benchmark turns API-call metering off, to measure what it costs. */
  meterUsage?: boolean;
}

/** Every entity, handed to the ORM once (MikroORM refuses a module it sees twice). */
export const entities = [
  WorkspaceEntity,
  PolicyEntity,
  IdentityProviderEntity,
  StructureEntity,
  FunctionEntity,
  TriggerEntity,
];

export const apiVersion = '0.1.0';

export const keySetOptions = (config: Pick<Config, 'auth'>) => ({
  allowPrivateNetworks: config.auth.allowPrivateNetworks,
  timeoutMs: config.auth.jwksTimeoutMs,
  cooldownMs: config.auth.jwksCooldownMs,
  maxAgeMs: config.auth.jwksCacheMs,
  maxBytes: config.auth.jwksMaxBytes,
});

/** The development issuer's key, unless in production: there it never exists. */
const devIssuerOf = ({ config, devIssuer }: Pick<AppDependencies, 'config' | 'devIssuer'>) =>
  config.env === 'production' ? undefined : devIssuer;

/** The shared pieces of the front door, built once per app. */
export function createAuthenticator(
  dependencies: Pick<AppDependencies, 'config' | 'database' | 'changes' | 'devIssuer'>,
  directory = new WorkspaceDirectory(dependencies.database, dependencies.changes),
): Authenticator {
  const { config, database } = dependencies;
  const devIssuer = devIssuerOf(dependencies);
  const keySets = new KeySets({
    ...keySetOptions(config),
    ...(devIssuer && { devIssuerKeys: { keys: [devIssuer.publicJwk] } }),
  });
  const verifier = new TokenVerifier(keySets, new VerifiedTokenCache(config.auth.tokenCacheSize));
  return new Authenticator(directory, verifier, database);
}

/** The platform admin key, or else a workspace user's token. */
function adminOrBearer(adminApiKey: string, bearer: RequestHandler): RequestHandler {
  const expected = adminKeyDigest(adminApiKey);
  return (request, response, next) => {
    if (!isPlatformAdminKey(bearerToken(request.headers), expected)) return bearer(request, response, next);
    request.platformAdmin = true;
    next();
  };
}

/** Builds the Express app; never listens, so tests and main.ts share it. */
export function createApp(dependencies: AppDependencies): {
  app: Express;
  api: Api;
  events: EventLog;
  /** Runs functions (the delivery task's FunctionAction); `close()` stops its sandbox threads. */
  functions: FunctionRunner;
  /** Event streams; `close()` ends them (before the server closes, or it would wait for them). */
  realtime: RealtimeHub;
  /** API calls counted in memory; `close()` writes what is still unflushed. */
  usage: UsageMeter;
  /** A graceful stop's HTTP side: `begin()` turns `/readyz` to 503 and asks clients to close connections. */
  drain: Drain;
  /** With Stripe configured: the catalog to sync at start, and the jobs the queue runs. */
  billing: { catalog: StripeCatalog; jobs: BillingJobs } | undefined;
} {
  const { config, database, changes, logger, signingKey } = dependencies;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');

  const metrics = createMetrics();
  const drain = new Drain();
  app.use(drain.middleware);
  app.use((request, _response, next) => {
    request.startedAt = process.hrtime.bigint();
    next();
  });
  app.use(requestLogging(logger));
  app.use(metrics.middleware);
  app.use((_request, response, next) => {
    response.setHeader('X-Content-Type-Options', 'nosniff');
    response.setHeader('Cache-Control', 'no-store');
    next();
  });
  // Stripe signs the bytes it sends: its webhook's body is kept raw, and verified before it is parsed.
  app.use('/v1/billing/webhook', express.raw({ type: () => true, limit: config.bodyLimit }));
  app.use(requireJsonBody, parseJsonBody(config.bodyLimit));

  const plans = dependencies.plans ?? Plans.load(config.billing.plansFile);
  const directory = new WorkspaceDirectory(database, changes);
  const authenticator = createAuthenticator(dependencies, directory);
  const usage = new UsageMeter(database, { flushMs: config.billing.usageFlushMs, logger });
  usage.start();
  // Every request authenticated as a workspace principal counts once toward its workspace's month.
  const metered = dependencies.meterUsage === false ? [] : [usage.guard(plans)];
  const bearer = authenticator.guard();
  const policyStore = new PolicyStore(database);
  const access = new AccessControl({
    policies: policyStore,
    database,
    directory,
    logDecisions: dependencies.logDecisions ?? true,
    graceDays: config.billing.graceDays,
  });
  const api = new Api(
    app,
    {
      admin: [requirePlatformAdmin(config.adminApiKey)],
      bearer: [bearer, ...metered],
      adminOrBearer: [adminOrBearer(config.adminApiKey, bearer), ...metered],
      bearerOrQuery: [authenticator.guard({ queryToken: true }), ...metered],
      none: [],
    },
    (request, requirement, work) => access.authorized(request, requirement, work),
  );
  const events = dependencies.events ?? new EventLog();
  const services = { database, access, changes, events, plans };
  let document: unknown;
  healthRoutes(api, database, metrics, drain, () => (document ??= openApiDocument(api.routes, apiVersion)));
  const secrets = new EventSecrets(config.adminApiKey);
  const triggerSecrets = new TriggerSecrets(secrets);
  const production = config.env === 'production';
  const webhookUrls = { production, allowPrivateNetworks: config.auth.allowPrivateNetworks };
  const templates = Templates.load();
  const workspaceTemplates = {
    check: (name: string) => templates.check(name),
    apply: (scope: Scope, name: string) =>
      templates.apply(scope, name, { urls: webhookUrls, actor: 'system', secrets: triggerSecrets }),
  };
  workspaceRoutes(api, new WorkspacesService({ ...services, templates: workspaceTemplates }), access);
  lifecycleRoutes(
    api,
    new LifecycleService({ database, access, changes, secrets: triggerSecrets, urls: webhookUrls }),
    templates,
    access,
  );
  identityProviderRoutes(
    api,
    new IdentityProvidersService({ ...services, proof: authenticator }),
    config.env === 'production',
  );
  whoamiRoutes(api);
  policyRoutes(api, new PoliciesService(services));
  policyTestRoutes(api, new PolicyTestsService(services));
  whatIfRoutes(api, new WhatIfService(database, access));
  checkRoutes(api, policyStore, access);
  structureRoutes(api, new StructuresService(services));
  const catalog = new StructureCatalog(database, changes);
  const limitHeadroom = new LimitHeadroom(metrics.registry);
  database.onConnectionLost(() => limitHeadroom.forget());
  const records = new RecordsService(new RecordStore(database), catalog, access, events, plans, limitHeadroom);
  recordRoutes(api, records, access);
  // Other instances hear of this one's commits (their streams read the events themselves).
  events.on('committed', (workspaceId) => changes.announceEvents(workspaceId));
  const realtime = new RealtimeHub({
    database,
    events,
    changes,
    authenticator,
    policies: policyStore,
    logger,
    registry: metrics.registry,
    options: { ...config.realtime, ...dependencies.realtime },
  });
  realtimeRoutes(api, realtime, access, catalog);
  memberRoutes(api, new MembersService(services));
  invitationRoutes(api, new InvitationsService(services, secrets, config.invitations), access, authenticator);
  triggerRoutes(api, new TriggersService({ ...services, sealer: secrets }), webhookUrls);
  decisionRoutes(api, new DecisionReader(database), access, signingKey);
  const runs = new FunctionRuns(database);
  const functions = new FunctionRunner({
    catalog: new FunctionCatalog(database, changes),
    policies: policyStore,
    directory,
    api: new FunctionApi({ records, access, database, events }),
    runs,
    pool: new SandboxPool(dependencies.sandbox),
    chainDepth: config.events.functionChainDepth,
    logger,
  });
  functionRoutes(api, new FunctionsService(services, functions, runs));
  const stripe = config.billing.stripe && {
    settings: config.billing.stripe,
    client: createStripe(config.billing.stripe),
  };
  let billing: { catalog: StripeCatalog; jobs: BillingJobs; service: StripeBilling } | undefined;
  if (stripe) {
    const { client, settings } = stripe;
    const catalog = new StripeCatalog(client, plans, { logger, meterEventName: settings.meterEventName });
    const sync = new SubscriptionSync(client, {
      database,
      changes,
      plans,
      logger,
      graceDays: config.billing.graceDays,
    });
    billing = {
      catalog,
      jobs: new BillingJobs(client, { database, sync, catalog, logger, meterEventName: settings.meterEventName }),
      service: new StripeBilling(client, {
        database,
        plans,
        catalog,
        sync,
        webhookSecret: settings.webhookSecret,
        logger,
      }),
    };
  }
  const operatorMetrics = new OperatorMetrics(database, plans);
  operatorMetrics.register(metrics.registry, logger);
  billingRoutes(
    api,
    new BillingService(services, { plans, meter: usage, graceDays: config.billing.graceDays }),
    plans,
    { stripe: billing?.service, metrics: operatorMetrics },
  );
  const devIssuer = devIssuerOf(dependencies);
  if (devIssuer) devIssuerRoutes(api, devIssuer);
  consoleRoutes(app);

  app.use(notFound);
  app.use(problemHandler);
  return {
    app,
    api,
    events,
    functions,
    realtime,
    usage,
    drain,
    billing: billing && { catalog: billing.catalog, jobs: billing.jobs },
  };
}
