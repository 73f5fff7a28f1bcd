import { parseArgs } from 'node:util';
import { readDevIssuerKey } from '../../auth/dev-issuer.ts';
import { slugPattern } from '../../json.ts';
import { parseTtl, signDevToken } from './dev-token.ts';

/**
 * `npm run token -- --workspace acme --user user_ann --role admin [--role …] [--email …] [--ttl 1h]`
 * prints a development token signed by the key a running Cordon (`npm start`, not in production)
 * keeps in DATA_DIR. A workspace trusts it once `npm run seed` (or an admin) has bound the
 * development issuer to it. Reads NODE_ENV, DATA_DIR (default `.data`) and CORDON_URL (default
 * `http://127.0.0.1:$PORT`, PORT 3000), as the service and the seed do. Exit code 0: the token on
 * stdout; 1: no key or production; 2: bad arguments.
 */

const usage =
  'usage: npm run token -- --workspace <slug> --user <id> [--role <role>]... [--email <address>] [--ttl 1h (at most 24h)]';

function fail(message: string, code: 1 | 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function readOptions() {
  try {
    return parseArgs({
      options: {
        workspace: { type: 'string' },
        user: { type: 'string' },
        role: { type: 'string', multiple: true, default: [] },
        email: { type: 'string' },
        ttl: { type: 'string', default: '1h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    return fail(`${(error as Error).message}\n${usage}`, 2);
  }
}

const { workspace, user, role: roles, email, ttl } = readOptions();
if (!workspace || !slugPattern.test(workspace)) fail(`--workspace must be a workspace slug\n${usage}`, 2);
if (!user) fail(`--user is required\n${usage}`, 2);
const ttlSeconds = parseTtl(ttl);
if (ttlSeconds === undefined) fail(`--ttl must be like 90s, 15m or 1h, at most 24h\n${usage}`, 2);

if (process.env.NODE_ENV === 'production') fail('npm run token: there is no development issuer in production', 1);
const dataDir = process.env.DATA_DIR || '.data';
const found = await readDevIssuerKey(dataDir);
if (!found) fail(`No development issuer key in ${dataDir}/: start Cordon first (npm start), which creates it`, 1);

const cordonUrl = process.env.CORDON_URL || `http://127.0.0.1:${process.env.PORT || 3000}`;
const token = await signDevToken(found.key, { cordonUrl, workspace, user, roles, email, ttlSeconds });
process.stdout.write(`${token}\n`);
