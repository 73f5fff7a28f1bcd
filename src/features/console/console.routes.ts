import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express, { type Express, type RequestHandler, type Response } from 'express';

/**
 * What the console's page and assets may do: load and call this origin only, run no inline script
 * or style, be framed by nobody, submit no form anywhere. Trusted Types make any HTML string sink
 * (`innerHTML`, `insertAdjacentHTML`, `document.write`) throw, so data is only ever text.
 */
export const consoleContentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "require-trusted-types-for 'script'",
  'trusted-types',
].join('; ');

const staticDirectory = fileURLToPath(new URL('./static/', import.meta.url));

const securityHeaders: RequestHandler = (_request, response, next) => {
  response.setHeader('Content-Security-Policy', consoleContentSecurityPolicy);
  response.setHeader('X-Frame-Options', 'DENY');
  response.setHeader('Referrer-Policy', 'no-referrer');
  response.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  response.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  response.setHeader('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=()');
  next();
};

/**
 * The admin console: one HTML page and its ES modules, served as files (no build step). It is not
 * an API route (an HTML page, outside the OpenAPI document); every call it makes is an ordinary
 * API request with the signed-in user's bearer token, authorized by policy like any other.
 */
export function consoleRoutes(app: Express): void {
  const page = readFileSync(`${staticDirectory}index.html`);
  const router = express.Router({ strict: false });
  router.use(securityHeaders);
  router.get('/', (_request, response: Response) => {
    response.type('html').send(page);
  });
  router.use(
    '/assets',
    express.static(`${staticDirectory}assets`, {
      index: false,
      redirect: false,
      dotfiles: 'ignore',
      lastModified: false,
      // Revalidated on every load (ETag): a new version of Cordon never runs a stale module.
      cacheControl: false,
      setHeaders: (response) => response.setHeader('Cache-Control', 'no-cache'),
    }),
  );
  app.use('/console', router);
}
