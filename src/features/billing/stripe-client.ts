import Stripe from 'stripe';
import type { StripeSettings } from '../../config.ts';
import { ProblemError } from '../../http/errors.ts';

export type { Stripe };

/**
 * The one Stripe client of an instance, on the API version stripe 23 pins. STRIPE_API_URL points
 * it elsewhere (a local stand-in over plain HTTP); every POST carries its own Idempotency-Key,
 * so a retry by the caller never does a thing twice.
 */
export function createStripe(settings: StripeSettings): Stripe {
  return new Stripe(settings.secretKey, {
    ...(settings.api && { host: settings.api.host, port: settings.api.port, protocol: settings.api.protocol }),
    maxNetworkRetries: 0,
    timeout: 20_000,
    appInfo: { name: 'cordon' },
  });
}

export const billingNotConfigured = () =>
  new ProblemError(
    'billing_not_configured',
    'Stripe is not configured (STRIPE_SECRET_KEY): the platform admin assigns plans',
  );

/** A Stripe failure seen by a client of ours: 502, the cause logged, never sent. */
export function stripeFailure(error: unknown): unknown {
  if (error instanceof Stripe.errors.StripeError) {
    return new ProblemError('billing_provider_error', 'Stripe refused or did not answer the request', { cause: error });
  }
  return error;
}
