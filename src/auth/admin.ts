import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestHandler } from 'express';
import { ProblemError } from '../http/errors.ts';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Extracts a bearer credential; `undefined` when the header is absent or not Bearer. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const header = headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  return match?.[1];
}

const challenge = (error: string, description: string) => ({
  'WWW-Authenticate': `Bearer realm="cordon-admin", error="${error}", error_description="${description}"`,
});

/** Whether the request carries the platform admin key (constant-time). */
export function isPlatformAdminKey(offered: string | undefined, expected: Buffer): boolean {
  return offered !== undefined && timingSafeEqual(digest(offered), expected);
}

export const adminKeyDigest = digest;

/**
 * Guards platform-admin routes. Both sides are hashed first so the comparison is constant-time
 * whatever the length of what was sent.
 */
export function requirePlatformAdmin(adminApiKey: string): RequestHandler {
  const expected = digest(adminApiKey);
  return (request, _response, next) => {
    const offered = bearerToken(request.headers);
    if (offered === undefined) {
      throw new ProblemError('admin_key_missing', 'Send the platform admin key as a Bearer token', {
        headers: { 'WWW-Authenticate': 'Bearer realm="cordon-admin"' },
      });
    }
    if (!isPlatformAdminKey(offered, expected)) {
      throw new ProblemError('admin_key_invalid', 'The platform admin key is not valid', {
        headers: challenge('invalid_token', 'The platform admin key is not valid'),
      });
    }
    request.platformAdmin = true;
    next();
  };
}
