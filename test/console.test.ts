import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { jest } from '@jest/globals';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startTestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

/**
 * The console: its headers over HTTP, then its pages driven in Debian's Chromium against a Cordon
 * listening on a port. The pages for policy tests and what-if are driven only where this build
 * serves their routes (read from its OpenAPI document); elsewhere the browser sees them say so.
 */

// A cold Chromium on a loaded machine: each step waits on conditions, up to `wait` each.
jest.setTimeout(60_000);

const cordon = await startTestApp();

/** The browser's globals these checks read in the page (the project's types are Node's, not the DOM's). */
declare const document: { cookie: string };
interface TextArea {
  value: string;
  selectionStart: number;
  selectionEnd: number;
}

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Generous: CI shares two cores with other work; every wait is on a condition, never a fixed sleep. */
const wait = 20_000;

let issuer: TestIssuer;
let server: Server;
let base: string;
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await cordon.close();
  await issuer?.close();
});

beforeAll(async () => {
  issuer = await TestIssuer.start();
  server = cordon.app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

const directives = (header: string) =>
  new Map(
    header.split(';').map((directive) => {
      const [name, ...values] = directive.trim().split(/\s+/);
      return [name!, values.join(' ')] as const;
    }),
  );

describe('GET /console over HTTP', () => {
  it('serves the page with a strict Content-Security-Policy and no inline script or style', async () => {
    const response = await cordon.http().get('/console').expect(200);
    expect(response.headers['content-type']).toMatch(/^text\/html/);
    const policy = directives(response.headers['content-security-policy']!);
    expect(Object.fromEntries(policy)).toMatchObject({
      'default-src': "'self'",
      'script-src': "'self'",
      'style-src': "'self'",
      'connect-src': "'self'",
      'frame-ancestors': "'none'",
      'base-uri': "'none'",
      'form-action': "'none'",
      'require-trusted-types-for': "'script'",
    });
    expect(response.headers['content-security-policy']).not.toMatch(/unsafe-|data:|\*/);
    expect(response.headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cache-control': 'no-store',
    });
    const html = response.text;
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    for (const script of html.match(/<script[^>]*>[\s\S]*?<\/script>/g) ?? []) {
      expect(script).toMatch(/\ssrc="\/console\/assets\/[a-z-]+\.js"/);
      expect(script).toMatch(/>\s*<\/script>$/);
    }
  });

  it('serves its assets with the same headers, revalidated on each load', async () => {
    for (const [path, type] of [
      ['/console/assets/main.js', /javascript/],
      ['/console/assets/pages/policies.js', /javascript/],
      ['/console/assets/console.css', /^text\/css/],
    ] as const) {
      const response = await cordon.http().get(path).expect(200);
      expect(response.headers['content-type']).toMatch(type);
      expect(response.headers['content-security-policy']).toContain("script-src 'self'");
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['cache-control']).toBe('no-cache');
      expect(response.headers.etag).toBeDefined();
    }
  });

  it('answers a missing asset with a 404 problem, and serves no dotfile or parent directory', async () => {
    const missing = await cordon.http().get('/console/assets/missing.js').expect(404);
    expect(missing.body.code).toBe('route_not_found');
    expect(missing.headers['content-security-policy']).toBeDefined();
    await cordon.http().get('/console/assets/../console.routes.ts').expect(404);
    await cordon.http().get('/console/assets/%2e%2e/console.routes.ts').expect(404);
  });

  it('is a page, not an API route: outside the OpenAPI document', async () => {
    const paths = (await cordon.http().get('/openapi.json').expect(200)).body.paths as Record<string, object>;
    expect(Object.keys(paths).filter((path) => path.startsWith('/console'))).toEqual([]);
  });
});

describe('the console in Chromium', () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let slug: string;
  let adminToken: string;
  let auditorToken: string;
  const problems: string[] = [];
  const startedAt = new Date(Date.now() - 60_000);

  beforeAll(async () => {
    const tenant = await createTenant(cordon, issuer, 'console');
    slug = tenant.slug;
    // Tokens outlive the whole file on a slow machine.
    adminToken = await issuer.sign(
      { v: 2, sub: 'user_admin', azp: 'https://app.example.com', o: { id: tenant.orgId, rol: 'admin' } },
      { expiresInSeconds: 900 },
    );
    auditorToken = await issuer.sign(
      { v: 2, sub: 'user_auditor', azp: 'https://app.example.com', o: { id: tenant.orgId, rol: 'auditor' } },
      { expiresInSeconds: 900 },
    );
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
      timeout: 60_000,
    });
    context = await browser.newContext({ acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(wait);
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('loads in under 200 KB, then signs in with a pasted token kept in sessionStorage only', async () => {
    const sizes: Promise<number>[] = [];
    const count = (response: import('playwright-core').Response) =>
      sizes.push(
        response
          .request()
          .sizes()
          .then((size) => size.responseBodySize + size.responseHeadersSize),
      );
    page.on('response', count);
    await page.goto(`${base}/console`, { waitUntil: 'load' });
    await page.locator('#sign-in').waitFor();
    page.off('response', count);
    const firstLoad = (await Promise.all(sizes)).reduce((sum, size) => sum + size, 0);
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    expect(firstLoad).toBeLessThan(200_000);

    await page.fill('#workspace', slug);
    await page.fill('#token', adminToken);
    await page.click('#sign-in button[type=submit]');
    await page.locator('#who[data-principal="user_admin"]').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('cordon.console.token'))).toBe(adminToken);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await page.evaluate(() => document.cookie)).toBe('');
    expect(await context.cookies()).toEqual([]);
    expect(page.url()).not.toContain(adminToken);
  });

  it('lists the policies, shows a validation error at its field, then saves a valid edit', async () => {
    await page.locator('.policy-row[data-name="viewer"]').waitFor();
    expect(await page.locator('.policy-row').evaluateAll((rows) => rows.map((row) => row.dataset.name))).toEqual(
      expect.arrayContaining(['admin', 'member', 'viewer', 'auditor']),
    );
    await page.click('.policy-row[data-name="viewer"] a');
    const editor = page.locator('textarea[aria-label="Policy JSON"]');
    await editor.waitFor();
    const stored = JSON.parse(await editor.inputValue());
    const broken = JSON.stringify(
      { ...stored, rules: [{ ...stored.rules[0], action: 'fly' }, stored.rules[1]] },
      null,
      2,
    );
    await editor.fill(broken);
    await page.click('#save-policy');

    const error = page.locator('.field-errors li[data-pointer="/rules/0/action"]');
    await error.waitFor();
    expect(await error.locator('.detail').textContent()).toContain('unknown action "fly"');
    const line = broken.split('\n').findIndex((text) => text.includes('"fly"')) + 1;
    expect(await error.getAttribute('data-line')).toBe(String(line));
    expect(
      await page
        .locator('.gutter li')
        .nth(line - 1)
        .getAttribute('class'),
    ).toBe('error');
    await error.locator('button').click();
    const selected = await editor.evaluate((element) => {
      const area = element as unknown as TextArea;
      return area.value.slice(area.selectionStart, area.selectionEnd);
    });
    expect(selected).toBe('"action": "fly"');

    await editor.fill(JSON.stringify({ ...stored, description: 'Edited in the console.' }, null, 2));
    await page.click('#save-policy');
    await page.locator('.detail .status .ok', { hasText: 'Saved version 2' }).waitFor();
    const { body } = await cordon.admin().get(`/v1/workspaces/${slug}/policies`).expect(200);
    const viewer = (body.data as { name: string; description: string; version: number }[]).find(
      (policy) => policy.name === 'viewer',
    );
    expect(viewer).toMatchObject({ description: 'Edited in the console.', version: 2 });
  });

  it('shows the version history and a diff of two versions', async () => {
    await page.locator('.version-row').nth(1).waitFor();
    expect(await page.locator('.version-row').count()).toBe(2);
    const diff = page.locator('pre.diff[data-from="1"][data-to="2"]');
    await diff.waitFor();
    expect(await diff.locator('.line.removed').allTextContents()).toEqual([
      expect.stringContaining('"description": "Reads records, structures and members; changes nothing."'),
    ]);
    expect(await diff.locator('.line.added').allTextContents()).toEqual([
      expect.stringContaining('"description": "Edited in the console."'),
    ]);
    // The same version on both sides: no change.
    await page.check('input[aria-label="From version 2"]');
    await page.locator('#same-version').waitFor();
    expect(await page.locator('pre.diff').count()).toBe(0);
  });

  it('runs the playground for itself and for a named principal', async () => {
    await page.click('a[href="#playground"]');
    await page.locator('#run-checks').click();
    await page.locator('.check-result').nth(1).waitFor();
    expect(
      await page.locator('.check-result').evaluateAll((items) => items.map((item) => item.dataset.outcome)),
    ).toEqual(['allowed', 'allowed']);
    expect(await page.locator('.check-result').first().textContent()).toContain('admins manage the workspace');
    await page.locator('.check-result .explanation tr.decided').first().waitFor();

    await page.check('#as-other');
    await page.fill('#principal-id', 'user_named');
    await page.fill('#principal-roles', 'viewer');
    await page.locator('textarea[aria-label="Checks"]').fill(JSON.stringify([{ action: 'read', subject: 'Policy' }]));
    await page.locator('#run-checks').click();
    const denied = page.locator('.check-result[data-outcome="denied"]');
    await denied.waitFor();
    expect(await denied.textContent()).toContain('viewers do not see workspace administration');
    await denied.locator('.explanation').waitFor();

    // A check the API refuses is marked at its field in the checks editor.
    await page.locator('textarea[aria-label="Checks"]').fill(JSON.stringify([{ action: 'fly', subject: 'Policy' }]));
    await page.locator('#run-checks').click();
    await page.locator('.field-errors li[data-pointer="/0/action"]').waitFor();
  });

  it('filters the decision log, exports it, and shows the chain verified', async () => {
    await cordon.sealer.sealAll();
    await page.click('a[href="#decisions"]');
    await page.locator('#verify-status[data-verified="true"]').waitFor();
    expect(await page.locator('#verify-status').textContent()).toMatch(/verified \d+ sealed/);
    await page.locator('.decision-row').first().waitFor();

    await page.fill('#filter-principal', 'user_named');
    await page.selectOption('#filter-outcome', 'false');
    const local = (date: Date) => {
      const pad = (number: number) => String(number).padStart(2, '0');
      return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
    };
    await page.fill('#filter-from', local(startedAt));
    await page.click('#search-decisions');
    await page.locator('.status[data-count="1"]').waitFor();
    const row = page.locator('.decision-row');
    expect(await row.getAttribute('data-outcome')).toBe('denied');
    expect(await row.textContent()).toContain('user_named');
    expect(await row.textContent()).toContain('viewers do not see workspace administration');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    expect(download.suggestedFilename()).toBe('decisions.csv');
    const csv = await readFile((await download.path())!, 'utf8');
    const lines = csv.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('user_named');
  });

  it('edits, runs and stores a test suite with coverage per rule', async () => {
    await page.click('a[href="#tests"]');
    const editor = page.locator('textarea[aria-label="Test suite JSON"]');
    await page.locator('#suite-origin').filter({ hasText: /./ }).waitFor();
    const suite = {
      principals: { admin: { id: 'user_a', roles: ['admin'] }, viewer: { id: 'user_v', roles: ['viewer'] } },
      resources: {},
      tests: [
        { name: 'admins update policies', principal: 'admin', action: 'update', subject: 'Policy', expect: 'allow' },
        { name: 'viewers read policies', principal: 'viewer', action: 'read', subject: 'Policy', expect: 'allow' },
      ],
    };
    await editor.fill(JSON.stringify(suite, null, 2));
    await page.click('#run-tests');
    await page.locator('#test-result-list .test-result').nth(1).waitFor();
    expect(await page.locator('.summary').getAttribute('data-passed')).toBe('false');
    expect(await page.locator('.test-result').evaluateAll((rows) => rows.map((row) => row.dataset.passed))).toEqual([
      'true',
      'false',
    ]);
    await page.locator('.coverage-row[data-rule="admin#0"][data-decided="1"]').waitFor();

    await editor.fill(JSON.stringify({ ...suite, tests: [suite.tests[0]] }, null, 2));
    await page.click('#save-suite');
    await page.locator('.status .ok').waitFor();
    const stored = await cordon.admin().get(`/v1/workspaces/${slug}/policy-tests`).expect(200);
    expect(stored.body.suite.tests).toHaveLength(1);

    await editor.fill(JSON.stringify({ ...suite, tests: [{ ...suite.tests[0], principal: 'nobody' }] }, null, 2));
    await page.click('#run-tests');
    await page.locator('.field-errors li[data-pointer^="/tests/0"]').waitFor();
  });

  it('replays the window against a draft and shows the flips', async () => {
    await page.click('a[href="#what-if"]');
    const editor = page.locator('textarea[aria-label="Draft policies JSON"]');
    await page.locator('textarea[aria-label="Draft policies JSON"][data-source="stored"]').waitFor();
    const drafts = JSON.parse(await editor.inputValue()) as { name: string; rules: unknown[] }[];
    // Viewers may read policies now: the named viewer's logged denial flips.
    const changed = drafts.map((policy) =>
      policy.name === 'viewer' ? { ...policy, rules: [{ action: 'read', subject: 'all' }] } : policy,
    );
    await editor.fill(JSON.stringify(changed, null, 2));
    await page.click('#run-what-if');
    const summary = page.locator('#what-if-results .summary');
    await summary.waitFor();
    expect(Number(await summary.getAttribute('data-flips'))).toBeGreaterThanOrEqual(1);
    await page.locator('.flip-sample', { hasText: 'user_named' }).first().waitFor();
  });

  it('keeps the token to its tab: another tab signs in on its own, here as an auditor', async () => {
    const other = await context.newPage();
    other.setDefaultTimeout(wait);
    other.on('pageerror', (error) => problems.push(error.message));
    try {
      await other.goto(`${base}/console#decisions`);
      await other.locator('#sign-in').waitFor();
      expect(await other.evaluate(() => sessionStorage.length)).toBe(0);
      await other.fill('#workspace', slug);
      await other.fill('#token', auditorToken);
      await other.click('#sign-in button[type=submit]');
      await other.locator('#who[data-principal="user_auditor"]').waitFor();
      await other.locator('.decision-row').first().waitFor();
      await other.click('a[href="#policies"]');
      await other.locator('section[data-page="policies"] .error[data-code="forbidden"]').waitFor();
      // The first tab is still signed in as the admin.
      expect(await page.evaluate(() => sessionStorage.getItem('cordon.console.token'))).toBe(adminToken);
    } finally {
      await other.close();
    }
  });

  it('signs out, forgetting the token; nothing broke the page policy', async () => {
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await context.cookies()).toEqual([]);
    expect(problems.filter((text) => !/status of (400|403|404)/.test(text))).toEqual([]);
  });
});
