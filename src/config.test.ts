import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseConfig } from './config.ts';

describe('parseConfig', () => {
  it('applies defaults for a bare development environment', () => {
    const config = parseConfig({});
    expect(config).toMatchObject({
      env: 'development',
      port: 3000,
      logLevel: 'info',
      dataDir: '.data',
      adminApiKey: undefined,
    });
    expect(config.database.ownerUrl).toBeUndefined();
  });

  it('treats an empty variable as unset', () => {
    expect(parseConfig({ PORT: '' }).port).toBe(3000);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x@y/z' }, 'DATABASE_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ ADMIN_API_KEY: 'short' }, 'ADMIN_API_KEY'],
    [{ NODE_ENV: 'staging' }, 'NODE_ENV'],
  ])('names the bad variable in %j', (env, name) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    expect(() => parseConfig(env)).toThrow(new RegExp(`^Invalid configuration: ${name} `));
  });

  it('requires ADMIN_API_KEY, DATABASE_URL, DECISION_SIGNING_KEY and INVITATION_ACCEPT_URL in production', () => {
    expect(() => parseConfig({ NODE_ENV: 'production' })).toThrow(
      /ADMIN_API_KEY is required in production; DATABASE_URL is required in production; DECISION_SIGNING_KEY is required in production; INVITATION_ACCEPT_URL is required in production/,
    );
  });
});

describe('invitation settings', () => {
  it('defaults to a week and Cordon’s own accept route, and wants {token} in a custom URL', () => {
    expect(parseConfig({}).invitations).toEqual({
      ttlHours: 168,
      acceptUrl: 'http://localhost:3000/v1/invitations/{token}/accept',
    });
    expect(
      parseConfig({ INVITATION_ACCEPT_URL: 'https://app.example.com/join/{token}', INVITATION_TTL_HOURS: '48' })
        .invitations,
    ).toEqual({ ttlHours: 48, acceptUrl: 'https://app.example.com/join/{token}' });
    expect(() => parseConfig({ INVITATION_ACCEPT_URL: 'https://app.example.com/join' })).toThrow(
      /INVITATION_ACCEPT_URL must contain \{token\}/,
    );
    expect(() => parseConfig({ INVITATION_TTL_HOURS: '0' })).toThrow(/INVITATION_TTL_HOURS/);
  });
});

describe('a bad configuration at start', () => {
  it('stops the process with one line naming the variable and no stack trace', () => {
    const result = spawnSync(process.execPath, ['src/main.ts'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { PATH: process.env.PATH, PORT: 'not-a-port' },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^Invalid configuration: PORT /)]);
  });
});

describe('Stripe settings', () => {
  it('leaves Stripe unconfigured without a secret key, and reconciles every 15 minutes by default', () => {
    const { billing } = parseConfig({});
    expect(billing.stripe).toBeUndefined();
    expect(billing.reconcileMinutes).toBe(15);
  });

  it('takes STRIPE_API_URL apart into host, port and protocol for the client', () => {
    const { billing } = parseConfig({
      STRIPE_SECRET_KEY: 'sk_test_abc123',
      STRIPE_WEBHOOK_SECRET: 'whsec_abc',
      STRIPE_API_URL: 'http://127.0.0.1:12111',
      BILLING_RECONCILE_MINUTES: '120',
    });
    expect(billing.stripe).toEqual({
      secretKey: 'sk_test_abc123',
      webhookSecret: 'whsec_abc',
      api: { host: '127.0.0.1', port: 12111, protocol: 'http' },
      meterEventName: 'cordon_api_calls',
    });
    expect(billing.reconcileMinutes).toBe(120);
    expect(
      parseConfig({ STRIPE_SECRET_KEY: 'sk_live_x', STRIPE_WEBHOOK_SECRET: 'whsec_y' }).billing.stripe?.api,
    ).toBeUndefined();
  });

  it.each([
    [{ STRIPE_SECRET_KEY: 'pk_test_abc', STRIPE_WEBHOOK_SECRET: 'whsec_a' }, 'STRIPE_SECRET_KEY'],
    [{ STRIPE_SECRET_KEY: 'sk_test_abc' }, 'STRIPE_WEBHOOK_SECRET'],
    [{ STRIPE_WEBHOOK_SECRET: 'secret' }, 'STRIPE_WEBHOOK_SECRET'],
    [{ STRIPE_API_URL: 'ftp://stripe.example' }, 'STRIPE_API_URL'],
    [{ STRIPE_API_URL: 'https://user:pass@stripe.example' }, 'STRIPE_API_URL'],
    [{ STRIPE_API_URL: 'https://stripe.example/v1' }, 'STRIPE_API_URL'],
    [{ STRIPE_API_URL: 'https://stripe.example/?key=1' }, 'STRIPE_API_URL'],
    [{ STRIPE_API_URL: 'https://stripe.example#top' }, 'STRIPE_API_URL'],
    [{ BILLING_RECONCILE_MINUTES: '7' }, 'BILLING_RECONCILE_MINUTES'],
    [{ BILLING_RECONCILE_MINUTES: '90' }, 'BILLING_RECONCILE_MINUTES'],
    [{ BILLING_RECONCILE_MINUTES: '0' }, 'BILLING_RECONCILE_MINUTES'],
  ])('names the bad variable in %j', (env, name) => {
    expect(() => parseConfig(env)).toThrow(new RegExp(`^Invalid configuration: ${name} `));
  });

  it('wants an https STRIPE_API_URL in production unless OUTBOUND_ALLOW_PRIVATE is set', () => {
    const production = {
      NODE_ENV: 'production',
      ADMIN_API_KEY: 'k'.repeat(32),
      DATABASE_URL: 'postgres://cordon@db.example/cordon',
      DECISION_SIGNING_KEY: '-----BEGIN PRIVATE KEY-----\nunused by this test\n-----END PRIVATE KEY-----',
      INVITATION_ACCEPT_URL: 'https://app.example.com/join/{token}',
      STRIPE_SECRET_KEY: 'sk_live_abc',
      STRIPE_WEBHOOK_SECRET: 'whsec_abc',
    };
    expect(() => parseConfig({ ...production, STRIPE_API_URL: 'http://stripe-proxy.internal:8080' })).toThrow(
      /STRIPE_API_URL must be https:\/\/ in production/,
    );
    const allowed = {
      ...production,
      STRIPE_API_URL: 'http://stripe-proxy.internal:8080',
      OUTBOUND_ALLOW_PRIVATE: 'true',
    };
    expect(parseConfig(allowed).billing.stripe?.api).toEqual({
      host: 'stripe-proxy.internal',
      port: 8080,
      protocol: 'http',
    });
    expect(parseConfig({ ...production, STRIPE_API_URL: 'https://stripe-proxy.example/' }).billing.stripe?.api).toEqual(
      { host: 'stripe-proxy.example', port: 443, protocol: 'https' },
    );
  });
});
