import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { devJwksPath } from '../src/auth/dev-issuer.ts';
import { devIdentityProvider } from '../src/features/dev-issuer/dev-token.ts';

/**
 * `npm run seed`: an example workspace (`acme`) with Project and Task structures, a contractor
 * policy, and the tutorial's function (`notify-assignee`: a task-assigned notification when a
 * task's assignee changes) on a `record_updated` trigger, created through the API of a running
 * Cordon (`npm start`), as the platform admin. Records need a user's token, so none are seeded;
 * when the running Cordon has a development issuer (not in production), it is bound to the
 * workspace as the identity provider `dev`, and `npm run token` signs tokens it trusts.
 * CORDON_URL (default http://127.0.0.1:3000) and ADMIN_API_KEY (default: the development key in
 * DATA_DIR) say where and as whom.
 */
const baseUrl = process.env.CORDON_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}`;
const adminKey =
  process.env.ADMIN_API_KEY ??
  (await readFile(path.resolve(process.env.DATA_DIR ?? '.data', 'admin-key'), 'utf8')).trim();
const example = JSON.parse(await readFile(new URL('./example.json', import.meta.url), 'utf8')) as {
  workspace: { slug: string; name: string };
  structures: { name: string }[];
  policies: { name: string }[];
  functions: { name: string }[];
  triggers: { name: string }[];
};

async function call(
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; body: { code?: string; detail?: string } }> {
  const response = await fetch(baseUrl + route, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return {
    status: response.status,
    body: (await response.json().catch(() => ({}))) as { code?: string; detail?: string },
  };
}

/** Creates, or says it already exists; anything else stops the seed. */
async function ensure(what: string, route: string, body: unknown, takenCode: string): Promise<void> {
  const { status, body: answer } = await call('POST', route, body);
  if (status === 201) console.log(`created ${what}`);
  else if (status === 409 && answer.code === takenCode) console.log(`${what} exists already`);
  else throw new Error(`${what}: ${status} ${answer.code ?? ''} ${answer.detail ?? ''}`);
}

const workspace = `/v1/workspaces/${example.workspace.slug}`;
await ensure(`workspace ${example.workspace.slug}`, '/v1/workspaces', example.workspace, 'slug_taken');
for (const structure of example.structures)
  await ensure(`structure ${structure.name}`, `${workspace}/structures`, structure, 'structure_name_taken');
for (const policy of example.policies)
  await ensure(`policy ${policy.name}`, `${workspace}/policies`, policy, 'policy_name_taken');
for (const fn of example.functions)
  await ensure(`function ${fn.name}`, `${workspace}/functions`, fn, 'function_name_taken');
for (const trigger of example.triggers)
  await ensure(`trigger ${trigger.name}`, `${workspace}/triggers`, trigger, 'trigger_name_taken');

// The development issuer exists where its key set is served: never in production (a 404 there).
const devProvider = devIdentityProvider(baseUrl, example.workspace.slug);
if ((await fetch(baseUrl + devJwksPath)).ok) {
  const providers = `${workspace}/identity-providers`;
  await ensure(`identity provider ${devProvider.name}`, providers, devProvider, 'identity_provider_name_taken');
  const bound = (await call('GET', providers)).body as { data?: { name: string; issuer: string }[] };
  const issuer = bound.data?.find((provider) => provider.name === devProvider.name)?.issuer;
  if (issuer !== devProvider.issuer)
    console.log(`  but it trusts ${issuer}, not ${devProvider.issuer}: delete it and seed again to rebind`);
} else {
  console.log('no development issuer here (production): npm run token will not work against it');
}
console.log(`done: ${baseUrl}${workspace}`);
