import type { EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { ChangeBus } from '../../db/changes.ts';
import { toArrayLiteral } from '../decisions/decision-log.ts';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
import { WorkspaceConfiguration } from '../../db/workspace-configuration.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Actor } from '../../policy/access.ts';
import { validateRules } from '../../policy/validate.ts';
import { isUuid } from '../workspaces/workspaces.schema.ts';
import { PolicyEntity, type Policy } from './policy.entity.ts';
import type { PolicyInput, PolicyResponse, PolicyVersionResponse } from './policies.schema.ts';

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
export async function recordVersion(em: EntityManager, policy: Policy, deleted = false): Promise<void> {
  await em.execute(
    `insert into policy_versions (policy_id, workspace_id, version, name, description, roles, rules, updated_at, updated_by, deleted)
     values (?, ?, ?, ?, ?, ?::text[], ?::jsonb, ?, ?, ?)`,
    [
      policy.id,
      policy.workspaceId,
      policy.version,
      policy.name,
      policy.description,
      toArrayLiteral(policy.roles),
      JSON.stringify(policy.rules),
      policy.updatedAt,
      policy.updatedBy,
      deleted,
    ],
  );
}

export class PoliciesService extends WorkspaceConfiguration {
  constructor(orm: Orm, changes: ChangeBus) {
    super(orm, changes, 'policy');
  }

  /** A policy change also moves the workspace's policy-set version, so cached abilities are never reused. */
  protected override change<T>(workspaceId: string, actor: Actor, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return super.change(workspaceId, actor, async (em) => {
      const value = await work(em);
      await em.execute('update workspaces set policy_set_version = policy_set_version + 1 where id = ?', [workspaceId]);
      return value;
    });
  }

  private async load(em: EntityManager, workspaceId: string, id: string): Promise<Policy> {
    const policy = isUuid(id) ? await em.findOne(PolicyEntity, { id: id.toLowerCase(), workspaceId }) : null;
    if (!policy) throw new ProblemError('policy_not_found', `No policy "${id}" in this workspace`);
    return policy;
  }

  private async validate(em: EntityManager, workspaceId: string, input: PolicyInput): Promise<void> {
    const rows = await em.execute<{ name: string; fields: Record<string, unknown> }[]>(
      'select name, fields from structures where workspace_id = ?',
      [workspaceId],
    );
    const structures = new Map(rows.map((row) => [row.name, Object.keys(row.fields)]));
    const errors = validateRules(input.rules, structures);
    if (errors.length) {
      throw new ProblemError('validation_failed', 'The policy rules are invalid', {
        errors: errors.map((error) => ({ ...error, in: 'body' as const })),
      });
    }
  }

  async list(workspaceId: string): Promise<PolicyResponse[]> {
    return withWorkspace(this.orm, workspaceId, async (em) =>
      (await em.find(PolicyEntity, { workspaceId }, { orderBy: { createdAt: 'asc', id: 'asc' } })).map(toResponse),
    );
  }

  async get(workspaceId: string, id: string): Promise<PolicyResponse> {
    return withWorkspace(this.orm, workspaceId, async (em) => toResponse(await this.load(em, workspaceId, id)));
  }

  async create(actor: Actor, workspaceId: string, input: PolicyInput): Promise<PolicyResponse> {
    return this.change(workspaceId, actor, async (em) => {
      await this.validate(em, workspaceId, input);
      const policy = em.create(PolicyEntity, { id: uuidv7(), workspaceId, ...input, updatedBy: actor.id });
      await em.flush();
      await recordVersion(em, policy);
      return toResponse(policy);
    });
  }

  async replace(actor: Actor, workspaceId: string, id: string, input: PolicyInput): Promise<PolicyResponse> {
    return this.change(workspaceId, actor, async (em) => {
      const policy = await this.load(em, workspaceId, id);
      await this.validate(em, workspaceId, input);
      em.assign(policy, { ...input, version: policy.version + 1, updatedBy: actor.id, updatedAt: new Date() });
      await em.flush();
      await recordVersion(em, policy);
      return toResponse(policy);
    });
  }

  async remove(actor: Actor, workspaceId: string, id: string): Promise<void> {
    await this.change(workspaceId, actor, async (em) => {
      const policy = await this.load(em, workspaceId, id);
      await em.nativeDelete(PolicyEntity, { id: policy.id, workspaceId });
      await recordVersion(
        em,
        { ...policy, version: policy.version + 1, updatedBy: actor.id, updatedAt: new Date() },
        true,
      );
    });
  }

  /** Every version, oldest first, including the deletion; readable after the policy is gone. */
  async versions(workspaceId: string, id: string): Promise<PolicyVersionResponse[]> {
    const rows = await withWorkspace(this.orm, workspaceId, (em) =>
      em.execute<
        {
          policy_id: string;
          version: number;
          name: string;
          description: string;
          roles: string[];
          rules: PolicyResponse['rules'];
          updated_at: Date;
          updated_by: string;
          deleted: boolean;
        }[]
      >('select * from policy_versions where workspace_id = ? and policy_id = ? order by version', [
        workspaceId,
        isUuid(id) ? id.toLowerCase() : '00000000-0000-0000-0000-000000000000',
      ]),
    );
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
  }
}
