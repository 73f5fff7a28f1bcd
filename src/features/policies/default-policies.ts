import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Scope } from '../../db/database.ts';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import { recordVersion } from './policies.service.ts';
import { PolicyEntity } from './policy.entity.ts';

const policyFile = z.object({
  name: z.string().min(1),
  description: z.string().default(''),
  roles: z.array(z.string().min(1)).min(1),
  rules: z.array(z.record(z.string(), z.unknown())).min(1),
});

export type DefaultPolicy = z.infer<typeof policyFile>;

const directory = fileURLToPath(new URL('../../../policies/', import.meta.url));

/** Read once at start: a broken file stops the process instead of a workspace creation. */
function loadDefaultPolicies(): DefaultPolicy[] {
  return readdirSync(directory)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const parsed = policyFile.safeParse(JSON.parse(readFileSync(path.join(directory, file), 'utf8')));
      if (!parsed.success) throw new Error(`policies/${file} is not a valid policy: ${parsed.error.message}`);
      return parsed.data;
    });
}

export const defaultPolicies: readonly DefaultPolicy[] = loadDefaultPolicies();

/** Installs the defaults in the new workspace's scope. */
export async function installDefaultPolicies(scope: Scope): Promise<void> {
  const created = defaultPolicies.map((policy) =>
    scope.em.create(PolicyEntity, { id: uuidv7(), workspaceId: scope.workspaceId, ...policy, updatedBy: 'system' }),
  );
  await scope.em.flush();
  for (const policy of created) await recordVersion(scope, policy);
}
