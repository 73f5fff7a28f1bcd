import { randomBytes, randomUUID } from 'node:crypto';
import { importJWK, jwtVerify } from 'jose';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp, entities, createAuthenticator, keySetOptions } from '../src/app.ts';
import { Authenticator } from '../src/auth/authenticate.ts';
import { KeySets } from '../src/auth/key-sets.ts';
import { VerifiedTokenCache } from '../src/auth/token-cache.ts';
import { TokenVerifier } from '../src/auth/tokens.ts';
import { WorkspaceDirectory } from '../src/auth/workspace-directory.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { parseConfig } from '../src/config.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { Database } from '../src/db/database.ts';
import { TestIssuer, type SigningAlgorithm } from '../test/support/issuer.ts';
import { compared, interleaved, opsPerSecond, type Measurement } from './report.ts';

const appOrigin = 'https://app.example.com';
// Tokens for about a tenth of a second of first-sight verification (with `millis` at 1000).
const poolSize: Record<SigningAlgorithm, number> = { RS256: 3_000, ES256: 1_500, EdDSA: 1_500 };
const rounds = 24;

/**
 * Token verification plus principal resolution, in process, against a bare `jose.jwtVerify`
 * with an in-memory key on the same tokens in the same run. `millis` scales the rounds: the
 * token pool (one pass per first-sight round) and the other windows (a twentieth of it).
 */
export async function authBench(appUrl: string, millis: number): Promise<Measurement[]> {
  const logger = pino({ level: 'silent' });
  const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: randomBytes(32).toString('hex') };
  const database = await Database.open({ url: appUrl, poolSize: 4, entities }, logger);
  const changes = new ChangeBus(undefined, logger);
  const { app } = createApp({ config, database, changes, logger, signingKey: generateSigningKey() });
  const admin = () => supertest.agent(app).auth(config.adminApiKey, { type: 'bearer' });
  const results: Measurement[] = [];

  for (const algorithm of ['RS256', 'ES256'] as SigningAlgorithm[]) {
    const issuer = await TestIssuer.start(algorithm);
    const slug = `bench-auth-${algorithm.toLowerCase()}-${randomUUID().slice(0, 6)}`;
    await admin().post('/v1/workspaces').send({ slug, name: 'Bench', plan: 'enterprise' }).expect(201);
    await admin()
      .post(`/v1/workspaces/${slug}/identity-providers`)
      .send({
        name: 'clerk',
        type: 'clerk',
        issuer: issuer.url,
        jwksUri: issuer.jwksUri,
        orgId: 'org_bench',
        authorizedParties: [appOrigin],
      })
      .expect(201);

    const sign = () =>
      issuer.sign(
        { sub: `user_${randomUUID()}`, org_id: 'org_bench', org_role: 'org:member', azp: appOrigin, jti: randomUUID() },
        { expiresInSeconds: 600 },
      );
    // Distinct tokens, so "first sight" never hits the verified-token cache (the warm-up tokens
    // have negative iterations and come from the end of the pool). A pass over the pool lasts
    // about a tenth of a second for either algorithm: short rounds, many of them.
    const pool = await Promise.all(
      Array.from({ length: Math.max(500, Math.round((poolSize[algorithm] * millis) / 1_000)) }, sign),
    );
    const publicKey = await importJWK(issuer.keys[0]!.publicJwk, algorithm);
    const token = (iteration: number) => pool[(iteration + pool.length) % pool.length]!;
    const bareVerify = (iteration: number) =>
      jwtVerify(token(iteration), publicKey, { issuer: issuer.url, algorithms: [algorithm] });

    // Warm JWKS, every token seen for the first time: keys already fetched. Each round gets a
    // fresh authenticator (an empty verified-token cache) and goes through the whole pool, so
    // no token is ever a cache hit (the warm-up tokens have negative iterations and come from
    // the end of the pool).
    const directory = new WorkspaceDirectory(database, changes);
    const pass = { maxIterations: pool.length - 200, millis: 60_000, warmup: 20, concurrency: 8 };
    const warm = createAuthenticator({ config, database, changes });
    await warm.authenticate(slug, await sign());
    const repeatedToken = await sign();
    const sides = {
      firstSight: async () => {
        const fresh = createAuthenticator({ config, database, changes });
        await fresh.authenticate(slug, await sign());
        return opsPerSecond((iteration) => fresh.authenticate(slug, token(iteration)), pass);
      },
      baseline: () => opsPerSecond(bareVerify, pass),
      repeated: () =>
        opsPerSecond(() => warm.authenticate(slug, repeatedToken), { millis: millis / 20, concurrency: 8 }),
      // Cold JWKS: new key sets per token, so every verification fetches the key set over HTTP
      // (the workspace directory stays warm: this measures the JWKS fetch, not the database).
      cold: () =>
        opsPerSecond(
          (iteration) => {
            const keySets = new KeySets({ ...keySetOptions(config), allowPrivateNetworks: true });
            return new Authenticator(
              directory,
              new TokenVerifier(keySets, new VerifiedTokenCache(16)),
              database,
            ).authenticate(slug, token(iteration));
          },
          { millis: millis / 20, warmup: 5 },
        ),
    };
    // Roles from the members table (`roleSource: members`), the same token again: measured in the
    // same rounds, so what it adds beyond the token cache is where the member's roles come from.
    const members =
      algorithm === 'RS256'
        ? await membersSameToken({ admin, config, database, changes, millis }, `${slug}-members`, issuer)
        : undefined;
    const allSides = { ...sides, members: members ?? (async () => 0) };
    await interleaved(1, allSides);
    // First sight and its baseline are neighbours in every round, in alternating order.
    const measured = await interleaved(rounds, allSides);
    const against = (side: 'firstSight' | 'repeated' | 'cold') =>
      measured.map((round) => ({ subject: round[side], baseline: round.baseline }));
    const baseline = `bare jose.jwtVerify ${algorithm}`;

    results.push(
      compared(
        `verify+resolve ${algorithm}, first sight, warm JWKS`,
        'ops/s',
        against('firstSight'),
        baseline,
        'ratio >= 0.8',
      ),
      compared(`verify+resolve ${algorithm}, first sight, cold JWKS`, 'ops/s', against('cold'), baseline),
      compared(`verify+resolve ${algorithm}, same token again`, 'ops/s', against('repeated'), baseline, 'ratio >= 10'),
      ...(members
        ? [
            compared(
              `verify+resolve ${algorithm}, same token again, roles from members`,
              'ops/s',
              measured.map((round) => ({ subject: round.members, baseline: round.baseline })),
              baseline,
              'ratio >= 10',
            ),
          ]
        : []),
    );
    await issuer.close();
  }
  await database.close();
  return results;
}

/**
 * The same token again, in a workspace whose provider takes roles from the members table
 * (`roleSource: members`): beyond the verified-token cache, what is measured is where the
 * member's roles come from.
 */
async function membersSameToken(
  bench: {
    admin: () => supertest.Agent;
    config: Parameters<typeof createAuthenticator>[0]['config'];
    database: Database;
    changes: ChangeBus;
    millis: number;
  },
  slug: string,
  issuer: TestIssuer,
): Promise<() => Promise<number>> {
  const { admin, config, database, changes, millis } = bench;
  await admin().post('/v1/workspaces').send({ slug, name: 'Bench members', plan: 'enterprise' }).expect(201);
  await admin()
    .post(`/v1/workspaces/${slug}/identity-providers`)
    .send({
      name: 'clerk',
      type: 'clerk',
      issuer: issuer.url,
      jwksUri: issuer.jwksUri,
      orgId: 'org_bench_members',
      authorizedParties: [appOrigin],
      roleSource: 'members',
    })
    .expect(201);
  await admin()
    .post(`/v1/workspaces/${slug}/members`)
    .send({ userId: 'user_member', roles: ['viewer'] })
    .expect(201);
  const token = await issuer.sign(
    { sub: 'user_member', org_id: 'org_bench_members', azp: appOrigin },
    { expiresInSeconds: 600 },
  );
  const front = createAuthenticator({ config, database, changes });
  const { principal } = await front.authenticate(slug, token);
  if (principal.roles.join() !== 'viewer') throw new Error('the bench member has no roles');
  return () => opsPerSecond(() => front.authenticate(slug, token), { millis: millis / 20, concurrency: 8 });
}
