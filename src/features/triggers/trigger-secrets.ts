import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import type { EventSecrets } from '../../events/secrets.ts';

/** Standard Webhooks' format: `whsec_` and the base64 of the key (32 random bytes). */
export const newSigningSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

/**
 * A webhook trigger's signing secrets, sealed at rest (events/secrets.ts). Rotating adds a secret
 * and gives the ones in force 24 more hours, during which every delivery carries a signature by
 * each, so receivers can switch when they like.
 */
export class TriggerSecrets {
  private readonly sealer: EventSecrets;

  constructor(sealer: EventSecrets) {
    this.sealer = sealer;
  }

  /** A new secret, in force at once; the previous ones expire after 24 h (when there are any). */
  async issue(scope: Scope, triggerId: string): Promise<{ secret: string; previousExpireAt: Date | null }> {
    const expiring = await scope.query(
      sql<{ expires_at: Date }>`update trigger_secrets set expires_at = now() + interval '24 hours'
        where workspace_id = ${scope.workspaceId}::uuid and trigger_id = ${triggerId}::uuid and expires_at is null
        returning expires_at`,
    );
    await scope.query(
      sql`delete from trigger_secrets
        where workspace_id = ${scope.workspaceId}::uuid and trigger_id = ${triggerId}::uuid and expires_at <= now()`,
    );
    const secret = newSigningSecret();
    await scope.query(
      sql`insert into trigger_secrets (workspace_id, trigger_id, id, secret)
        values (${scope.workspaceId}::uuid, ${triggerId}::uuid, ${uuidv7()}::uuid, ${this.sealer.seal(secret)})`,
    );
    return { secret, previousExpireAt: expiring[0] ? new Date(expiring[0].expires_at) : null };
  }

  /** A trigger that is no longer a webhook keeps no secret. */
  async removeAll(scope: Scope, triggerId: string): Promise<void> {
    await scope.query(
      sql`delete from trigger_secrets where workspace_id = ${scope.workspaceId}::uuid and trigger_id = ${triggerId}::uuid`,
    );
  }

  open(sealed: readonly string[]): string[] {
    return sealed.map((secret) => this.sealer.open(secret));
  }
}
