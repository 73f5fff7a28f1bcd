import { jest } from '@jest/globals';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { createScratchDatabase } from './support/app.ts';
import { repositoryRoot, startService, type ServiceProcess } from './support/process.ts';

jest.setTimeout(90_000);

/** The sources of the Dockerfile's `COPY` instructions: what the image holds of the checkout. */
async function copiedByDockerfile(): Promise<string[]> {
  const dockerfile = await readFile(path.join(repositoryRoot, 'Dockerfile'), 'utf8');
  return dockerfile
    .split('\n')
    .filter((line) => /^COPY\s/i.test(line))
    .flatMap((line) => line.trim().split(/\s+/).slice(1, -1));
}

/** The module specifiers a source file loads when it runs: type-only imports are erased. */
function runtimeSpecifiers(file: string, text: string): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) ||
      (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier)
    ) {
      if (node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      found.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, text, ts.ScriptTarget.Latest));
  return found;
}

/** Every package a module under src/ loads when it runs (tests aside), by name. */
async function packagesImportedBySource(): Promise<Set<string>> {
  const files = (await readdir(path.join(repositoryRoot, 'src'), { recursive: true })).filter(
    (file) => file.endsWith('.ts') && !file.endsWith('.test.ts'),
  );
  const names = new Set<string>();
  for (const file of files) {
    const text = await readFile(path.join(repositoryRoot, 'src', file), 'utf8');
    for (const specifier of runtimeSpecifiers(file, text)) {
      if (specifier.startsWith('.') || specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
      const parts = specifier.split('/');
      names.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
    }
  }
  return names;
}

/**
 * The image `docker compose up` builds holds only what the Dockerfile copies and the production
 * dependencies. Its files, assembled in a directory of their own, must start the service in
 * production as docker-compose.yml configures it — plans and templates included, which it reads
 * at start.
 */
describe('the container image', () => {
  let directory: string;
  let service: ServiceProcess | undefined;
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>> | undefined;

  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'cordon-image-'));
  });

  afterAll(async () => {
    await service?.stop();
    await scratch?.drop();
    await rm(directory, { recursive: true, force: true });
  });

  it('imports from src/ only packages that are production dependencies', async () => {
    const manifest = JSON.parse(await readFile(path.join(repositoryRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const imported = [...(await packagesImportedBySource())];
    expect(imported).toContain('express');
    expect(imported.filter((name) => !(name in manifest.dependencies))).toEqual([]);
  });

  it('starts in production from the files the Dockerfile copies, and stops cleanly', async () => {
    const sources = await copiedByDockerfile();
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'src']));
    for (const source of sources) {
      await cp(path.join(repositoryRoot, source), path.join(directory, source), { recursive: true });
    }
    // The image installs the production dependencies; the checkout's own serve here (the
    // test above holds src/ to production dependencies).
    await symlink(path.join(repositoryRoot, 'node_modules'), path.join(directory, 'node_modules'), 'dir');

    scratch = await createScratchDatabase();
    const adminKey = randomBytes(32).toString('hex');
    const signingKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    service = await startService(
      {
        NODE_ENV: 'production',
        PORT: '0',
        DATABASE_URL: scratch.url,
        ADMIN_API_KEY: adminKey,
        DECISION_SIGNING_KEY: signingKey.toString(),
        INVITATION_ACCEPT_URL: 'https://app.example.com/invitations/{token}/accept',
        LOG_LEVEL: 'info',
      },
      { cwd: directory },
    );
    const base = `http://127.0.0.1:${service.port}`;
    const admin = { authorization: `Bearer ${adminKey}` };

    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const plans = (await (await fetch(`${base}/v1/plans`)).json()) as { data: { id: string }[] };
    expect(plans.data.map((plan) => plan.id)).toEqual(expect.arrayContaining(['free', 'enterprise']));
    const templates = await fetch(`${base}/v1/templates`, { headers: admin });
    expect(templates.status).toBe(200);
    expect(JSON.stringify(await templates.json())).toContain('project-management');
    const created = await fetch(`${base}/v1/workspaces`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ slug: 'from-the-image', name: 'Image', template: 'project-management' }),
    });
    expect(created.status).toBe(201);
    expect((await fetch(`${base}/console`)).status).toBe(200);

    const stopping = service;
    service = undefined;
    expect(await stopping.stop('SIGTERM')).toBe(0);
  });
});
