import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import type { Caller } from '../../policy/access.ts';
import { Managers } from '../../policy/managers.ts';
import { validateRules } from '../../policy/validate.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import { guardPolicyChange } from '../policy-tests/policy-tests.store.ts';
import type { PolicyInput, PolicyResponse, PolicyVersionResponse } from './policies.schema.ts';
import { PolicyEntity, type Policy } from './policy.entity.ts';

export function toResponse(policy: Policy): PolicyResponse {
  return {
    id: policy.id,
    name: policy.name,
    description: policy.description,
    roles: policy.roles,
    rules: policy.rules as PolicyResponse['rules'],
    version: policy.version,
    createdAt: policy.createdAt.toISOString(),
    updatedAt: policy.updatedAt.toISOString(),
    updatedBy: policy.updatedBy,
  };
}

/** Appends a version row; every state a policy was ever in can be read back. */
export async function recordVersion(scope: Scope, policy: Policy, deleted = false): Promise<void> {
  await scope.query(
    sql`insert into policy_versions (policy_id, workspace_id, version, name, description, roles, rules, updated_at, updated_by, deleted)
      values (${policy.id}::uuid, ${scope.workspaceId}::uuid, ${policy.version}::integer, ${policy.name}, ${policy.description},
              ${policy.roles}::text[], ${JSON.stringify(policy.rules)}::jsonb, ${policy.updatedAt}::timestamptz, ${policy.updatedBy}, ${deleted})`,
  );
}

/** The workspace's structures and their fields, as rules are validated against them. */
export async function structureFields(scope: Scope): Promise<Map<string, string[]>> {
  const rows = await scope.query(
    sql<{ name: string; fields: Record<string, unknown> }>`select name, fields from structures
      where workspace_id = ${scope.workspaceId}::uuid`,
  );
  return new Map(rows.map((row) => [row.name, Object.keys(row.fields)]));
}

interface VersionRow {
  policy_id: string;
  version: number;
  name: string;
  description: string;
  roles: string[];
  rules: PolicyResponse['rules'];
  updated_at: Date;
  updated_by: string;
  deleted: boolean;
}

export class PoliciesService extends WorkspaceConfiguration {
  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0]) {
    super(options, 'policy');
  }

  /**
   * A policy change moves the workspace's policy-set version, so cached abilities are never
   * reused, may not leave the workspace without a member who can manage members, and may not
   * make a stored policy test fail (unless forced).
   */
  private changePolicies<T>(caller: Caller, force: boolean, work: (scope: Scope) => Promise<T>): Promise<T> {
    return this.change(caller, async (scope) => {
      const managers = await Managers.of(scope);
      const value = await guardPolicyChange(scope, force, () => work(scope));
      await managers.keepOneAfterPolicyChange();
      await scope.query(
        sql`update workspaces set policy_set_version = policy_set_version + 1 where id = ${scope.workspaceId}::uuid`,
      );
      return value;
    });
  }

  private async load(scope: Scope, id: string): Promise<Policy> {
    const policy = isUuid(id)
      ? await scope.em.findOne(PolicyEntity, { id: id.toLowerCase(), workspaceId: scope.workspaceId })
      : null;
    if (!policy) throw new ProblemError('policy_not_found', `No policy "${id}" in this workspace`);
    return policy;
  }

  private async validate(scope: Scope, input: PolicyInput): Promise<void> {
    const errors = validateRules(input.rules, await structureFields(scope));
    if (errors.length) {
      throw new ProblemError('validation_failed', 'The policy rules are invalid', {
        errors: errors.map((error) => ({ ...error, in: 'body' as const })),
      });
    }
  }

  list(caller: Caller): Promise<PolicyResponse[]> {
    return this.read(caller, async (scope) =>
      (
        await scope.em.find(
          PolicyEntity,
          { workspaceId: scope.workspaceId },
          { orderBy: { createdAt: 'asc', id: 'asc' } },
        )
      ).map(toResponse),
    );
  }

  get(caller: Caller, id: string): Promise<PolicyResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      return toResponse(await this.load(scope, id));
    });
  }

  create(caller: Caller, input: PolicyInput, force = false): Promise<PolicyResponse> {
    return this.changePolicies(caller, force, async (scope) => {
      await this.validate(scope, input);
      const policy = scope.em.create(PolicyEntity, {
        id: uuidv7(),
        workspaceId: scope.workspaceId,
        ...input,
        updatedBy: caller.principal.id,
      });
      caller.ruling?.refine({ resourceId: policy.id });
      await scope.em.flush();
      await recordVersion(scope, policy);
      return toResponse(policy);
    });
  }

  replace(caller: Caller, id: string, input: PolicyInput, force = false): Promise<PolicyResponse> {
    return this.changePolicies(caller, force, async (scope) => {
      caller.ruling?.refine({ resourceId: id });
      const policy = await this.load(scope, id);
      await this.validate(scope, input);
      scope.em.assign(policy, {
        ...input,
        version: policy.version + 1,
        updatedBy: caller.principal.id,
        updatedAt: new Date(),
      });
      await scope.em.flush();
      await recordVersion(scope, policy);
      return toResponse(policy);
    });
  }

  async remove(caller: Caller, id: string, force = false): Promise<void> {
    await this.changePolicies(caller, force, async (scope) => {
      caller.ruling?.refine({ resourceId: id });
      const policy = await this.load(scope, id);
      await scope.em.nativeDelete(PolicyEntity, { id: policy.id, workspaceId: scope.workspaceId });
      const removed = { ...policy, version: policy.version + 1, updatedBy: caller.principal.id, updatedAt: new Date() };
      await recordVersion(scope, removed, true);
    });
  }

  /** Every version, oldest first, including the deletion; readable after the policy is gone. */
  versions(caller: Caller, id: string): Promise<PolicyVersionResponse[]> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const rows = isUuid(id)
        ? await scope.query(
            sql<VersionRow>`select * from policy_versions
              where workspace_id = ${scope.workspaceId}::uuid and policy_id = ${id.toLowerCase()}::uuid order by version`,
          )
        : [];
      if (!rows.length) throw new ProblemError('policy_not_found', `No policy "${id}" in this workspace`);
      return rows.map((row) => ({
        id: row.policy_id,
        name: row.name,
        description: row.description,
        roles: row.roles,
        rules: row.rules,
        version: row.version,
        updatedAt: new Date(row.updated_at).toISOString(),
        updatedBy: row.updated_by,
        deleted: row.deleted,
      }));
    });
  }
}
