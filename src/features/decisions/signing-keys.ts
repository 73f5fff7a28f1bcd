import { createPublicKey, type KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { Database } from '../../db/database.ts';
import { publicKeyId, type SigningKey } from './signing.ts';

/**
 * Every key that ever signed checkpoints, kept by its public half (a platform table, no
 * workspace): after `DECISION_SIGNING_KEY` changes, checkpoints of the earlier keys still verify.
 */

export interface KnownKey {
  keyId: string;
  publicKey: KeyObject;
  firstUsedAt: string;
}

/** Called where the service starts, before it seals: recording a key twice changes nothing. */
export async function registerSigningKey(database: Database, key: SigningKey): Promise<void> {
  const publicKeyPem = key.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await database.outsideWorkspaces((transaction) =>
    transaction.query(
      sql`insert into decision_signing_keys (key_id, public_key_pem) values (${key.keyId}, ${publicKeyPem})
        on conflict (key_id) do nothing`,
    ),
  );
}

/** Newest first. A key is named by its own id, whatever the row says. */
export async function knownSigningKeys(database: Database): Promise<KnownKey[]> {
  const rows = await database.outsideWorkspaces((transaction) =>
    transaction.query(
      sql<{ public_key_pem: string; first_used_at: Date }>`select public_key_pem, first_used_at
        from decision_signing_keys order by first_used_at desc, key_id`,
    ),
  );
  return rows.map((row) => {
    const publicKey = createPublicKey(row.public_key_pem);
    return { keyId: publicKeyId(publicKey), publicKey, firstUsedAt: new Date(row.first_used_at).toISOString() };
  });
}
