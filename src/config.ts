import { z } from 'zod';

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const postgresUrl = z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// URL' }).optional();

const byteSize = z
  .string()
  .regex(/^\d+(b|kb|mb)$/i, 'must look like 512kb or 1mb')
  .default('1mb');

const boolean = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

const environment = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    HOST: z.string().min(1).default('0.0.0.0'),
    PORT: z.coerce.number().int().min(0).max(65_535).default(3000),
    DATABASE_URL: postgresUrl,
    DATABASE_APP_URL: postgresUrl,
    DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
    ADMIN_API_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
    LOG_LEVEL: z.enum(logLevels).default('info'),
    DATA_DIR: z.string().min(1).default('.data'),
    EMBEDDED_PG_PORT: z.coerce.number().int().min(1).max(65_535).default(54_329),
    BODY_LIMIT: byteSize,
    TRUST_PROXY: boolean.default(false),
    OUTBOUND_ALLOW_PRIVATE: boolean.optional(),
    JWKS_TIMEOUT_MS: z.coerce.number().int().min(100).max(30_000).default(5_000),
    JWKS_COOLDOWN_SECONDS: z.coerce.number().min(0).max(3_600).default(30),
    JWKS_CACHE_SECONDS: z.coerce.number().min(1).max(86_400).default(600),
    JWKS_MAX_BYTES: z.coerce.number().int().min(1_024).max(4_194_304).default(262_144),
    TOKEN_CACHE_SIZE: z.coerce.number().int().min(0).max(1_000_000).default(10_000),
    DECISION_SIGNING_KEY: z
      .string()
      .includes('PRIVATE KEY', { message: 'must be a PKCS#8 PEM private key' })
      .optional(),
    DECISION_SEAL_INTERVAL_MS: z.coerce.number().int().min(50).max(60_000).default(1_000),
    INVITATION_TTL_HOURS: z.coerce
      .number()
      .int()
      .min(1)
      .max(24 * 90)
      .default(24 * 7),
    INVITATION_ACCEPT_URL: z
      .string()
      .url()
      .refine((value) => value.includes('%7Btoken%7D') || value.includes('{token}'), 'must contain {token}')
      .optional(),
    EVENT_RETENTION_HOURS: z.coerce
      .number()
      .int()
      .min(1)
      .max(24 * 365)
      .default(72),
    DELIVERY_RETENTION_DAYS: z.coerce.number().int().min(1).max(3_650).default(30),
    BILLING_EVENT_RETENTION_DAYS: z.coerce.number().int().min(7).max(3_650).default(90),
    FUNCTION_CHAIN_DEPTH: z.coerce.number().int().min(0).max(10).default(3),
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(4),
    REALTIME_MAX_STREAMS: z.coerce.number().int().min(1).max(100_000).default(10_000),
    REALTIME_MAX_STREAMS_PER_PRINCIPAL: z.coerce.number().int().min(1).max(1_000).default(20),
    REALTIME_MAX_BUFFER_KB: z.coerce.number().int().min(16).max(65_536).default(1_024),
    BILLING_GRACE_DAYS: z.coerce.number().int().min(0).max(90).default(7),
    PLANS_FILE: z.string().min(1).optional(),
    API_USAGE_FLUSH_MS: z.coerce.number().int().min(100).max(300_000).default(5_000),
    SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(20_000),
    STRIPE_SECRET_KEY: z
      .string()
      .regex(/^(sk|rk)_(test|live)_\w+$/, 'must be a Stripe secret key (sk_… or rk_…)')
      .optional(),
    STRIPE_WEBHOOK_SECRET: z.string().startsWith('whsec_', 'must be a webhook signing secret (whsec_…)').optional(),
    STRIPE_API_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s):// URL' }).optional(),
    STRIPE_METER_EVENT_NAME: z
      .string()
      .regex(/^[a-z0-9_]{1,100}$/, 'must be a meter event name (a-z, 0-9, _)')
      .default('cordon_api_calls'),
    // Minutes that divide an hour, or whole hours that divide a day: a crontab step either way.
    BILLING_RECONCILE_MINUTES: z.coerce
      .number()
      .int()
      .min(1)
      .max(1_440)
      .refine((minutes) => (minutes < 60 ? 60 % minutes === 0 : minutes % 60 === 0 && 24 % (minutes / 60) === 0), {
        message: 'must divide an hour (1–30) or be whole hours that divide a day (60, 120, …, 1440)',
      })
      .default(15),
  })
  .superRefine((env, context) => {
    // Without the signing secret no webhook could be verified: a secret key alone is a half setup.
    if (env.STRIPE_SECRET_KEY && !env.STRIPE_WEBHOOK_SECRET) {
      context.addIssue({
        code: 'custom',
        path: ['STRIPE_WEBHOOK_SECRET'],
        message: 'is required with STRIPE_SECRET_KEY',
      });
    }
    if (env.STRIPE_API_URL) {
      // The client takes only host, port and protocol: anything else would be silently dropped.
      const url = new URL(env.STRIPE_API_URL);
      const issue = (message: string) => context.addIssue({ code: 'custom', path: ['STRIPE_API_URL'], message });
      if (url.username || url.password) issue('must not carry credentials (the secret key is STRIPE_SECRET_KEY)');
      if (url.pathname !== '/' || url.search || url.hash) issue('must be an origin only (no path, query or fragment)');
      // The secret key travels with every request: in production only over TLS, unless private endpoints are allowed.
      if (env.NODE_ENV === 'production' && url.protocol !== 'https:' && !env.OUTBOUND_ALLOW_PRIVATE) {
        issue('must be https:// in production (unless OUTBOUND_ALLOW_PRIVATE is set)');
      }
    }
    if (env.NODE_ENV !== 'production') return;
    // Invitation emails must not point at localhost: production names the accept page.
    for (const name of ['ADMIN_API_KEY', 'DATABASE_URL', 'DECISION_SIGNING_KEY', 'INVITATION_ACCEPT_URL'] as const) {
      if (!env[name]) context.addIssue({ code: 'custom', path: [name], message: 'is required in production' });
    }
  });

export type Environment = z.infer<typeof environment>;

export interface Config {
  env: Environment['NODE_ENV'];
  host: string;
  port: number;
  logLevel: Environment['LOG_LEVEL'];
  dataDir: string;
  bodyLimit: string;
  trustProxy: boolean;
  /** On SIGTERM, how long in-flight requests and open connections get before they are cut. */
  shutdownGraceMs: number;
  /** Undefined until main.ts resolves it (from the environment or `.data/admin-key`). */
  adminApiKey: string | undefined;
  auth: {
    /** Outbound fetches (JWKS) may reach loopback and private networks: never in production by default. */
    allowPrivateNetworks: boolean;
    jwksTimeoutMs: number;
    jwksCooldownMs: number;
    jwksCacheMs: number;
    jwksMaxBytes: number;
    tokenCacheSize: number;
  };
  decisions: {
    /** Ed25519 PKCS#8 PEM; generated into `DATA_DIR` in development when unset. */
    signingKeyPem: string | undefined;
    sealIntervalMs: number;
  };
  invitations: {
    ttlHours: number;
    /** Where invitees accept, with `{token}` in it: the app's page, or Cordon's own accept route. */
    acceptUrl: string;
  };
  events: {
    retentionHours: number;
    deliveryRetentionDays: number;
    /** BILLING_EVENT_RETENTION_DAYS: how long the ids of applied Stripe events are kept. */
    billingEventRetentionDays: number;
    /** How many function runs deep a chain of triggers may go (a function's writes fire triggers again). */
    functionChainDepth: number;
    /** Background jobs (deliveries, function runs) one instance runs at once. */
    workerConcurrency: number;
  };
  realtime: {
    /** Open event streams one instance serves at once. */
    maxStreams: number;
    /** Open event streams of one principal (user or function) of one workspace, per instance. */
    maxStreamsPerPrincipal: number;
    /** A stream whose unsent output passes this many bytes is dropped (a slow consumer). */
    maxBufferBytes: number;
  };
  billing: {
    /** How long a past_due workspace keeps full use before it turns read-only. */
    graceDays: number;
    /** The plans file; seeds/plans.json when unset. */
    plansFile: string | undefined;
    /** How often counted API calls are written (what a crash can lose). */
    usageFlushMs: number;
    /** How often every subscription is read again from Stripe (missed webhooks repaired). */
    reconcileMinutes: number;
    /** Undefined without STRIPE_SECRET_KEY: billing routes answer 503 and plans are assigned by the platform admin. */
    stripe: StripeSettings | undefined;
  };
  database: {
    /** Owner connection: runs migrations. Undefined means "start the embedded PostgreSQL". */
    ownerUrl: string | undefined;
    /** Serving connection: a role that owns no table. Derived from the owner URL when unset. */
    appUrl: string | undefined;
    poolSize: number;
    embeddedPort: number;
  };
}

export interface StripeSettings {
  secretKey: string;
  webhookSecret: string;
  /** STRIPE_API_URL taken apart for the client; Stripe's own API when unset. */
  api: { host: string; port: number; protocol: 'http' | 'https' } | undefined;
  /** The Billing Meter's event_name that API calls are reported under. */
  meterEventName: string;
}

export class ConfigError extends Error {}

function stripeApi(url: string | undefined): StripeSettings['api'] {
  if (!url) return undefined;
  const parsed = new URL(url);
  const protocol = parsed.protocol === 'http:' ? 'http' : 'https';
  return { host: parsed.hostname, port: Number(parsed.port || (protocol === 'http' ? 80 : 443)), protocol };
}

/** Parses the environment once; the message names every bad variable on one line. */
export function parseConfig(source: Record<string, string | undefined>): Config {
  const blankAsUnset = Object.fromEntries(
    Object.entries(source).filter(([, value]) => value !== undefined && value !== ''),
  );
  const result = environment.safeParse(blankAsUnset);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`);
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  }
  const env = result.data;
  return {
    env: env.NODE_ENV,
    host: env.HOST,
    port: env.PORT,
    logLevel: env.LOG_LEVEL,
    dataDir: env.DATA_DIR,
    bodyLimit: env.BODY_LIMIT,
    trustProxy: env.TRUST_PROXY,
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    adminApiKey: env.ADMIN_API_KEY,
    auth: {
      allowPrivateNetworks: env.OUTBOUND_ALLOW_PRIVATE ?? env.NODE_ENV !== 'production',
      jwksTimeoutMs: env.JWKS_TIMEOUT_MS,
      jwksCooldownMs: env.JWKS_COOLDOWN_SECONDS * 1000,
      jwksCacheMs: env.JWKS_CACHE_SECONDS * 1000,
      jwksMaxBytes: env.JWKS_MAX_BYTES,
      tokenCacheSize: env.TOKEN_CACHE_SIZE,
    },
    decisions: {
      signingKeyPem: env.DECISION_SIGNING_KEY?.replaceAll('\\n', '\n'),
      sealIntervalMs: env.DECISION_SEAL_INTERVAL_MS,
    },
    invitations: {
      ttlHours: env.INVITATION_TTL_HOURS,
      acceptUrl: env.INVITATION_ACCEPT_URL ?? `http://localhost:${env.PORT}/v1/invitations/{token}/accept`,
    },
    events: {
      retentionHours: env.EVENT_RETENTION_HOURS,
      deliveryRetentionDays: env.DELIVERY_RETENTION_DAYS,
      billingEventRetentionDays: env.BILLING_EVENT_RETENTION_DAYS,
      functionChainDepth: env.FUNCTION_CHAIN_DEPTH,
      workerConcurrency: env.WORKER_CONCURRENCY,
    },
    realtime: {
      maxStreams: env.REALTIME_MAX_STREAMS,
      maxStreamsPerPrincipal: env.REALTIME_MAX_STREAMS_PER_PRINCIPAL,
      maxBufferBytes: env.REALTIME_MAX_BUFFER_KB * 1024,
    },
    billing: {
      graceDays: env.BILLING_GRACE_DAYS,
      plansFile: env.PLANS_FILE,
      usageFlushMs: env.API_USAGE_FLUSH_MS,
      reconcileMinutes: env.BILLING_RECONCILE_MINUTES,
      stripe: env.STRIPE_SECRET_KEY
        ? {
            secretKey: env.STRIPE_SECRET_KEY,
            webhookSecret: env.STRIPE_WEBHOOK_SECRET!,
            api: stripeApi(env.STRIPE_API_URL),
            meterEventName: env.STRIPE_METER_EVENT_NAME,
          }
        : undefined,
    },
    database: {
      ownerUrl: env.DATABASE_URL,
      appUrl: env.DATABASE_APP_URL,
      poolSize: env.DATABASE_POOL_SIZE,
      embeddedPort: env.EMBEDDED_PG_PORT,
    },
  };
}
