import type { Request } from 'express';
import type { Change, ChangeBus } from '../../db/changes.ts';
import type { Database } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { ndjsonLines } from '../../http/ndjson.ts';
import { isUuid } from '../../json.ts';
import type { AccessControl, Caller } from '../../policy/access.ts';
import type { DecisionEntry } from '../../policy/decision-log.ts';
import type { TriggerSecrets } from '../triggers/trigger-secrets.ts';
import type { WebhookUrlRules } from '../triggers/triggers.schema.ts';
import { WorkspaceEntity } from '../workspaces/workspace.entity.ts';
import type { ImportResponse } from './lifecycle.schema.ts';
import { exportWorkspace } from './workspace-export.ts';
import { WorkspaceImport } from './workspace-import.ts';

/** An import line may be this long; the body as a whole is not limited (it is never held whole). */
export const maxImportLineBytes = 1024 * 1024;

/** What an import may change: every cache of the workspace drops it. */
const importedTopics = ['structure', 'policy', 'identity-provider', 'member', 'function', 'trigger'] as const;

const adminEntry = (workspaceId: string, action: 'read' | 'create', reason: string): DecisionEntry => ({
  action,
  operation: 'admin',
  subject: 'Workspace',
  resourceId: workspaceId,
  decision: { allowed: true, policyId: null, policyVersion: null, ruleIndex: null, reason },
});

const allowedReason = 'platform admin key (outside tenant policy)';

/** A tenant's backup and restore, for the platform admin; each is one decision in the tenant's log. */
export class LifecycleService {
  private readonly database: Database;
  private readonly access: AccessControl;
  private readonly changes: ChangeBus;
  private readonly secrets: TriggerSecrets;
  private readonly urls: WebhookUrlRules;

  constructor(options: {
    database: Database;
    access: AccessControl;
    changes: ChangeBus;
    secrets: TriggerSecrets;
    urls: WebhookUrlRules;
  }) {
    this.database = options.database;
    this.access = options.access;
    this.changes = options.changes;
    this.secrets = options.secrets;
    this.urls = options.urls;
  }

  /** The workspace's id by slug or id; unknown and malformed references are the same 404. */
  async workspaceId(reference: string): Promise<string> {
    const workspace = await this.database.outsideWorkspaces((transaction) =>
      transaction.em.findOne(
        WorkspaceEntity,
        isUuid(reference) ? { id: reference.toLowerCase() } : { slug: reference },
      ),
    );
    if (!workspace) throw new ProblemError('workspace_not_found', `No workspace "${reference}"`);
    return workspace.id;
  }

  /** The export's decision is durable before its first line leaves. */
  async export(caller: Caller, write: (chunk: string) => Promise<void>): Promise<void> {
    await this.access.decided(caller, [adminEntry(caller.workspaceId, 'read', allowedReason)]);
    await exportWorkspace(this.database, caller.workspaceId, write);
  }

  /**
   * Reads the body line by line into one transaction: it commits after the last line, or a line
   * that fails leaves the workspace as it was. The decision commits with the rows, or (refused)
   * is written on its own with the reason.
   */
  async import(caller: Caller, body: Request, identityProviders: 'import' | 'skip'): Promise<ImportResponse> {
    const entry = adminEntry(caller.workspaceId, 'create', allowedReason);
    let result: ImportResponse;
    try {
      result = await this.database.withWorkspace(caller.workspaceId, async (scope) => {
        const restore = await WorkspaceImport.into(scope, {
          urls: this.urls,
          identityProviders,
          actor: caller.principal.id,
          secrets: this.secrets,
        });
        for await (const line of ndjsonLines(body, maxImportLineBytes)) await restore.addText(line.number, line.text);
        const summary = await restore.finish();
        for (const topic of importedTopics)
          await this.changes.announce(scope, { topic, workspaceId: caller.workspaceId });
        await this.access.decidedIn(scope, caller, [entry]);
        return summary;
      });
    } catch (error) {
      const code = error instanceof ProblemError ? error.code : 'internal';
      await this.access.decided(caller, [
        { ...entry, decision: { ...entry.decision, reason: `${allowedReason}; import refused: ${code}` } },
      ]);
      throw error;
    }
    for (const topic of importedTopics) this.changes.apply({ topic, workspaceId: caller.workspaceId } as Change);
    return result;
  }
}
