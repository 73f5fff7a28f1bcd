import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Scope } from './database.ts';

/**
 * Events wait in `outbox_events` for delivery (the record-event webhooks will send them); one is
 * appended in the transaction of the change it announces, so it exists exactly when the change
 * does.
 */
export async function appendEvent(scope: Scope, topic: string, payload: Record<string, unknown>): Promise<string> {
  const id = uuidv7();
  await scope.query(
    sql`insert into outbox_events (id, workspace_id, topic, payload)
      values (${id}::uuid, ${scope.workspaceId}::uuid, ${topic}, ${JSON.stringify(payload)}::jsonb)`,
  );
  return id;
}

/**
 * Secrets an event must carry (an invitation's accept URL holds its token) are sealed with
 * AES-256-GCM under a key derived from the service's admin key, so a copy of the database alone
 * cannot use them; the deliverer opens them just before sending.
 */
export class EventSecrets {
  private readonly key: Buffer;

  constructor(serviceSecret: string) {
    this.key = createHmac('sha256', serviceSecret).update('cordon outbox secrets v1').digest();
  }

  seal(text: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
  }

  open(sealed: string): string {
    const bytes = Buffer.from(sealed, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
  }
}
