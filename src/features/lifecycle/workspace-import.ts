import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import type { Scope } from '../../db/database.ts';
import { fieldErrors } from '../../http/api.ts';
import { ProblemError, type ErrorCode, type FieldError } from '../../http/errors.ts';
import { unstorableValues } from '../../http/storable.ts';
import { parseConditions } from '../../policy/conditions.ts';
import { validateRules } from '../../policy/validate.ts';
import { defaultPolicies } from '../policies/default-policies.ts';
import { defaultErrors, recordSchema, type RecordSchema } from '../structures/record-schema.ts';
import type { Fields } from '../structures/structures.schema.ts';
import type { TriggerSecrets } from '../triggers/trigger-secrets.ts';
import type { WebhookUrlRules } from '../triggers/triggers.schema.ts';
import { createBodies, line, lineKinds, ownedFields, type ImportResponse, type LineKind } from './lifecycle.schema.ts';

/** Records are written this many to a statement. */
const batchSize = 500;

export interface ImportOptions {
  /** The configuration's rules for URLs (production, private networks), as the routes apply them. */
  urls: WebhookUrlRules;
  identityProviders: 'import' | 'skip';
  /** Who the rows an import leaves without an author are by (`updatedBy`, `createdBy`). */
  actor: string;
  secrets: TriggerSecrets;
}

interface KnownStructure {
  line: number;
  fields: Fields;
  schema: RecordSchema;
  /** Other structures' record fields that reference this one: their ids are remembered. */
  referenced: boolean;
}

interface RecordRow {
  line: number;
  id: string;
  structure: string;
  data: string;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  version: number;
}

const problemAt = (code: ErrorCode, number: number, detail: string, errors?: FieldError[]) =>
  new ProblemError(code, `Line ${number}: ${detail}`, { extensions: { line: number }, ...(errors && { errors }) });

const invalid = (number: number, detail: string, errors?: FieldError[]) =>
  problemAt('import_invalid_line', number, detail, errors);

/** PostgreSQL's unique violation, by constraint name. */
const uniqueViolation = (error: unknown): string | undefined => {
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  return code === '23505' && typeof constraint === 'string' ? constraint : undefined;
};

const nowIso = () => new Date().toISOString();

type Body<K extends LineKind> = z.output<ReturnType<typeof createBodies>[K]>;

/**
 * Restores export lines into an empty workspace, inside the caller's transaction and the
 * workspace's RLS scope: the caller commits once at the end, so a bad line anywhere leaves
 * nothing behind. Each line passes the schema its feature's create route uses, and what that
 * route checks against the workspace (a record against its structure, references to records of
 * the import, rules against the imported structures, a trigger's structure, function and
 * condition). Configuration must come before what uses it, as exports write it: structures,
 * policies, identity providers, members, functions, triggers, records.
 */
export class WorkspaceImport {
  private readonly scope: Scope;
  private readonly options: ImportOptions;
  private readonly bodies: ReturnType<typeof createBodies>;
  private readonly structures = new Map<string, KnownStructure>();
  private readonly functions = new Set<string>();
  /** Ids of imported records of referenced structures, by structure. */
  private readonly recordIds = new Map<string, Set<string>>();
  /** References to records not seen yet when their line was read, checked at the end. */
  private readonly forward: { line: number; field: string; target: string; id: string }[] = [];
  private batch: RecordRow[] = [];
  private defaultsRemoved = false;
  private lines = 0;
  private readonly imported: Record<LineKind, number> = Object.fromEntries(
    lineKinds.map((kind) => [kind, 0]),
  ) as Record<LineKind, number>;
  private readonly triggerSecrets: ImportResponse['triggerSecrets'] = [];

  private constructor(scope: Scope, options: ImportOptions) {
    this.scope = scope;
    this.options = options;
    this.bodies = createBodies(options.urls);
  }

  /**
   * Starts an import after checking, under a lock on the workspace row, that the workspace holds
   * nothing but what creating it put there: its default policies, unchanged (the import's
   * policies replace them), and its identity providers when the import skips the export's.
   *
   * `for no key update`, not `for update`: it serialises imports (and a workspace's deletion)
   * without blocking the foreign-key checks of other transactions that write rows of this
   * workspace meanwhile (a decision, counted API calls), which `for update` would hold until the
   * import commits — and an import that waits on such a writer would then never commit.
   */
  static async into(scope: Scope, options: ImportOptions): Promise<WorkspaceImport> {
    const workspace = scope.workspaceId;
    await scope.query(sql`select 1 from workspaces where id = ${workspace}::uuid for no key update`);
    const [counts] = await scope.query(
      sql<{ held: string; policies: string }>`select
        (select count(*) from structures where workspace_id = ${workspace}::uuid)
          + (select count(*) from members where workspace_id = ${workspace}::uuid)
          + (select count(*) from invitations where workspace_id = ${workspace}::uuid)
          + (select count(*) from functions where workspace_id = ${workspace}::uuid)
          + (select count(*) from triggers where workspace_id = ${workspace}::uuid)
          + ${options.identityProviders === 'import' ? sql`(select count(*) from identity_providers where workspace_id = ${workspace}::uuid)` : sql`0`}
          as held,
        (select count(*) from policies where workspace_id = ${workspace}::uuid
          and not (version = 1 and updated_by = 'system' and name = any(${defaultPolicies.map((policy) => policy.name)}::text[])))
          as policies`,
    );
    if (Number(counts?.held ?? 0) > 0 || Number(counts?.policies ?? 0) > 0) {
      throw new ProblemError(
        'import_target_not_empty',
        'Import into a workspace that holds nothing but its default policies' +
          (options.identityProviders === 'skip' ? ' and identity providers' : ''),
      );
    }
    return new WorkspaceImport(scope, options);
  }

  /** One line of NDJSON text. */
  async addText(number: number, text: string): Promise<void> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw problemAt('import_malformed_line', number, `not JSON (${(error as Error).message})`);
    }
    await this.add(number, value);
  }

  /** One parsed line, `{ kind, data }`. */
  async add(number: number, value: unknown): Promise<void> {
    this.lines = Math.max(this.lines, number);
    const parsed = line.safeParse(value);
    if (!parsed.success) throw problemAt('import_malformed_line', number, 'not a JSON object { kind, data }');
    const { kind, data } = parsed.data;
    if (!(lineKinds as readonly string[]).includes(kind)) {
      throw problemAt('import_unknown_kind', number, `unknown kind "${kind}" (kinds: ${lineKinds.join(', ')})`);
    }
    const unstorable = unstorableValues(data, { pointer: '/data', in: 'body', maxDepth: 64 });
    if (unstorable.length) throw invalid(number, 'holds text PostgreSQL cannot store', unstorable);
    const known = kind as LineKind;
    if (known === 'identityProvider' && this.options.identityProviders === 'skip') return;
    const { owned, body } = this.parse(number, known, data);
    await this.write(number, known, owned, body);
    this.imported[known] += 1;
  }

  /** The server-owned fields and the create body, each through its schema. */
  private parse(number: number, kind: LineKind, data: Record<string, unknown>) {
    const ownedSchema = ownedFields[kind];
    const ownedKeys = new Set(Object.keys(ownedSchema.shape));
    const split = { owned: {} as Record<string, unknown>, body: {} as Record<string, unknown> };
    for (const [key, item] of Object.entries(data)) split[ownedKeys.has(key) ? 'owned' : 'body'][key] = item;
    const check = <S extends z.ZodType>(schema: S, input: unknown): z.output<S> => {
      const result = schema.safeParse(input);
      if (result.success) return result.data;
      const errors = fieldErrors(result.error.issues, 'body').map((error) => ({
        ...error,
        pointer: `/data${error.pointer}`,
      }));
      throw invalid(number, `the ${kind} is invalid`, errors);
    };
    return {
      owned: check(ownedSchema, split.owned) as Record<string, unknown>,
      body: check(this.bodies[kind], split.body),
    };
  }

  private async write(number: number, kind: LineKind, owned: Record<string, unknown>, body: unknown): Promise<void> {
    const workspace = this.scope.workspaceId;
    const version = (owned.version as number | undefined) ?? 1;
    const createdAt = (owned.createdAt as string | undefined) ?? nowIso();
    const updatedAt = (owned.updatedAt as string | undefined) ?? createdAt;
    switch (kind) {
      case 'structure': {
        const input = body as Body<'structure'>;
        if (this.structures.has(input.name)) throw invalid(number, `structure "${input.name}" appears twice`);
        const errors = defaultErrors(input.fields);
        for (const [field, definition] of Object.entries(input.fields)) {
          if (
            (definition.type === 'number' || definition.type === 'integer') &&
            (definition.min ?? -Infinity) > (definition.max ?? Infinity)
          )
            errors.push({ pointer: `/fields/${field}/min`, in: 'body', detail: 'must not be greater than max' });
          if (
            definition.type === 'reference' &&
            definition.structure !== input.name &&
            !this.structures.has(definition.structure)
          )
            errors.push({
              pointer: `/fields/${field}/structure`,
              in: 'body',
              detail: `there is no structure "${definition.structure}" before this line`,
            });
        }
        if (errors.length)
          throw invalid(
            number,
            `the structure "${input.name}" is invalid`,
            errors.map((error) => ({ ...error, pointer: `/data${error.pointer}` })),
          );
        for (const definition of Object.values(input.fields)) {
          if (definition.type !== 'reference') continue;
          const target = definition.structure === input.name ? undefined : this.structures.get(definition.structure);
          if (target) target.referenced = true;
        }
        const selfReferenced = Object.values(input.fields).some(
          (definition) => definition.type === 'reference' && definition.structure === input.name,
        );
        await this.scope.query(
          sql`insert into structures (workspace_id, name, description, fields, version, created_at, updated_at)
            values (${workspace}::uuid, ${input.name}, ${input.description}, ${JSON.stringify(input.fields)}::jsonb,
                    ${version}::integer, ${createdAt}::timestamptz, ${updatedAt}::timestamptz)`,
        );
        this.structures.set(input.name, {
          line: number,
          fields: input.fields,
          // The schema of these fields, as the records API compiles it.
          schema: recordSchema(input.fields),
          referenced: selfReferenced,
        });
        return;
      }
      case 'policy': {
        const input = body as Body<'policy'>;
        const errors = validateRules(
          input.rules,
          new Map([...this.structures].map(([name, known]) => [name, Object.keys(known.fields)])),
        );
        if (errors.length)
          throw invalid(
            number,
            `the policy "${input.name}" is invalid`,
            errors.map((error) => ({ ...error, pointer: `/data${error.pointer}`, in: 'body' as const })),
          );
        await this.removeDefaultPolicies();
        const id = (owned.id as string | undefined) ?? uuidv7();
        const updatedBy = (owned.updatedBy as string | undefined) ?? this.options.actor;
        await this.unique(
          number,
          sql`insert into policies (id, workspace_id, name, description, roles, rules, version, created_at, updated_at, updated_by)
            values (${id}::uuid, ${workspace}::uuid, ${input.name}, ${input.description}, ${input.roles}::text[], ${JSON.stringify(input.rules)}::jsonb,
                    ${version}::integer, ${createdAt}::timestamptz, ${updatedAt}::timestamptz, ${updatedBy})`,
        );
        await this.scope.query(
          sql`insert into policy_versions (policy_id, workspace_id, version, name, description, roles, rules, updated_at, updated_by, deleted)
            values (${id}::uuid, ${workspace}::uuid, ${version}::integer, ${input.name}, ${input.description}, ${input.roles}::text[],
                    ${JSON.stringify(input.rules)}::jsonb, ${updatedAt}::timestamptz, ${updatedBy}, false)`,
        );
        return;
      }
      case 'identityProvider': {
        const input = body as Body<'identityProvider'>;
        await this.unique(
          number,
          sql`insert into identity_providers (id, workspace_id, name, type, issuer, jwks_uri, jwks, audiences, authorized_parties,
              algorithms, clock_tolerance_seconds, org_id, claims, role_map, role_source, allow_pending_sessions, version, created_at, updated_at)
            values (${(owned.id as string | undefined) ?? uuidv7()}::uuid, ${workspace}::uuid, ${input.name}, ${input.type}, ${input.issuer},
                    ${input.jwksUri ?? null}, ${input.jwks ? JSON.stringify(input.jwks) : null}::jsonb, ${input.audiences}::text[],
                    ${input.authorizedParties}::text[], ${input.algorithms}::text[], ${input.clockToleranceSeconds}::integer, ${input.orgId},
                    ${JSON.stringify(input.claims)}::jsonb, ${JSON.stringify(input.roleMap)}::jsonb, ${input.roleSource},
                    ${input.allowPendingSessions}, ${version}::integer, ${createdAt}::timestamptz, ${updatedAt}::timestamptz)`,
        );
        return;
      }
      case 'member': {
        const input = body as Body<'member'>;
        const joinedAt = (owned.joinedAt as string | undefined) ?? nowIso();
        await this.unique(
          number,
          sql`insert into members (workspace_id, user_id, email, roles, invited_by, joined_at, updated_at)
            values (${workspace}::uuid, ${input.userId}, ${input.email ?? null}, ${input.roles}::text[], ${(owned.invitedBy as string | null | undefined) ?? null},
                    ${joinedAt}::timestamptz, ${(owned.updatedAt as string | undefined) ?? joinedAt}::timestamptz)`,
        );
        return;
      }
      case 'function': {
        const input = body as Body<'function'>;
        await this.unique(
          number,
          sql`insert into functions (workspace_id, name, code, roles, timeout_ms, memory_mb, version, created_at, updated_at)
            values (${workspace}::uuid, ${input.name}, ${input.code}, ${input.roles}::text[], ${input.timeoutMs}::integer, ${input.memoryMb}::integer,
                    ${version}::integer, ${createdAt}::timestamptz, ${updatedAt}::timestamptz)`,
        );
        this.functions.add(input.name);
        return;
      }
      case 'trigger':
        await this.writeTrigger(number, owned, body as Body<'trigger'>, { version, createdAt, updatedAt });
        return;
      case 'record':
        await this.addRecord(number, owned, body as Body<'record'>, { version, createdAt, updatedAt });
        return;
    }
  }

  private async writeTrigger(
    number: number,
    owned: Record<string, unknown>,
    input: Body<'trigger'>,
    times: { version: number; createdAt: string; updatedAt: string },
  ): Promise<void> {
    const errors: FieldError[] = [];
    if (input.structure && !this.structures.has(input.structure))
      errors.push({
        pointer: '/data/structure',
        in: 'body',
        detail: `there is no structure "${input.structure}" before this line`,
      });
    if (input.action.type === 'function' && !this.functions.has(input.action.function))
      errors.push({
        pointer: '/data/action/function',
        in: 'body',
        detail: `there is no function "${input.action.function}" before this line`,
      });
    if (input.condition)
      errors.push(
        ...parseConditions(input.condition, '/data/condition').errors.map((error) => ({
          ...error,
          in: 'body' as const,
        })),
      );
    if (errors.length) throw invalid(number, `the trigger "${input.name}" is invalid`, errors);
    const id = (owned.id as string | undefined) ?? uuidv7();
    await this.unique(
      number,
      sql`insert into triggers (workspace_id, id, name, events, structure, condition, enabled, action, disabled_reason, version, created_at, updated_at)
        values (${this.scope.workspaceId}::uuid, ${id}::uuid, ${input.name}, ${input.events}::text[], ${input.structure ?? null},
                ${input.condition ? JSON.stringify(input.condition) : null}::jsonb, ${input.enabled}, ${JSON.stringify(input.action)}::jsonb,
                ${(owned.disabledReason as string | null | undefined) ?? null}, ${times.version}::integer,
                ${times.createdAt}::timestamptz, ${times.updatedAt}::timestamptz)`,
    );
    // Exports carry no signing secret: a restored webhook trigger gets a new one, shown once.
    if (input.action.type === 'webhook') {
      const { secret } = await this.options.secrets.issue(this.scope, id);
      this.triggerSecrets.push({ id, name: input.name, secret });
    }
  }

  private async addRecord(
    number: number,
    owned: Record<string, unknown>,
    input: Body<'record'>,
    times: { version: number; createdAt: string; updatedAt: string },
  ): Promise<void> {
    const structure = this.structures.get(input.structure);
    if (!structure) throw invalid(number, `there is no structure "${input.structure}" before this line`);
    const errors = structure.schema.validate(input.data);
    if (errors.length) {
      const pointers = errors.map((error) => ({ ...error, pointer: `/data${error.pointer}` }));
      throw invalid(number, `the ${input.structure} record is invalid`, pointers);
    }
    // An exported record is restored as stored; a line without its times (a template's) is a create and gets its defaults.
    const data = structure.schema.normalise(input.data, { defaults: !owned.createdAt });
    const id = ((owned.id as string | undefined) ?? uuidv7()).toLowerCase();
    for (const [field, definition] of Object.entries(structure.fields)) {
      const value = data[field];
      if (definition.type !== 'reference' || typeof value !== 'string') continue;
      if (!this.recordIds.get(definition.structure)?.has(value.toLowerCase()))
        this.forward.push({ line: number, field, target: definition.structure, id: value.toLowerCase() });
    }
    if (structure.referenced) {
      let ids = this.recordIds.get(input.structure);
      if (!ids) this.recordIds.set(input.structure, (ids = new Set()));
      if (ids.has(id)) throw invalid(number, `record "${id}" appears twice`);
      ids.add(id);
    }
    this.batch.push({
      line: number,
      id,
      structure: input.structure,
      data: JSON.stringify(data),
      createdBy: (owned.createdBy as string | undefined) ?? this.options.actor,
      createdAt: times.createdAt,
      updatedAt: times.updatedAt,
      version: times.version,
    });
    if (this.batch.length >= batchSize) await this.flush();
  }

  /** Writes the pending records in one statement; an id given twice is named by its line. */
  private async flush(): Promise<void> {
    const rows = this.batch;
    if (!rows.length) return;
    this.batch = [];
    const column = <K extends keyof RecordRow>(key: K) => rows.map((row) => row[key]);
    const written = await this.scope.query(
      sql<{
        id: string;
      }>`insert into records (workspace_id, id, structure, data, created_by, created_at, updated_at, version)
        select ${this.scope.workspaceId}::uuid, row.* from unnest(${column('id')}::uuid[], ${column('structure')}::text[],
          ${column('data')}::jsonb[], ${column('createdBy')}::text[], ${column('createdAt')}::timestamptz[],
          ${column('updatedAt')}::timestamptz[], ${column('version')}::integer[]) as row
        on conflict do nothing returning id`,
    );
    if (written.length === rows.length) return;
    // The first row of an id that was written is the one stored; any other row of an id was not.
    const stored = new Set(written.map((row) => row.id));
    const repeated = rows.find((row) => !stored.delete(row.id)) ?? rows[0]!;
    throw invalid(repeated.line, `record "${repeated.id}" appears twice`);
  }

  /** A row some other line (or workspace) already holds: a duplicate here, or a conflict outside. */
  private async unique(number: number, statement: Parameters<Scope['query']>[0]): Promise<void> {
    try {
      await this.scope.query(statement);
    } catch (error) {
      const constraint = uniqueViolation(error);
      if (constraint === 'identity_providers_issuer_org_key')
        throw problemAt(
          'import_conflict',
          number,
          'another workspace is bound to this issuer and orgId (import with identityProviders=skip to leave it out)',
        );
      if (constraint) throw invalid(number, `repeats a name or id of an earlier line (${constraint})`);
      throw error;
    }
  }

  /** The defaults of a new workspace give way to the import's first policy; their history is kept. */
  private async removeDefaultPolicies(): Promise<void> {
    if (this.defaultsRemoved) return;
    this.defaultsRemoved = true;
    await this.scope.query(
      sql`with removed as (delete from policies where workspace_id = ${this.scope.workspaceId}::uuid returning *)
        insert into policy_versions (policy_id, workspace_id, version, name, description, roles, rules, updated_at, updated_by, deleted)
        select id, workspace_id, version + 1, name, description, roles, rules, now(), ${this.options.actor}, true from removed`,
    );
  }

  /** Writes what is pending, checks the references no line could check when read, and moves the policy-set version. */
  async finish(): Promise<ImportResponse> {
    await this.flush();
    const dangling = this.forward.find((reference) => !this.recordIds.get(reference.target)?.has(reference.id));
    if (dangling) {
      throw invalid(dangling.line, `the record is invalid`, [
        {
          pointer: `/data/data/${dangling.field}`,
          in: 'body',
          detail: `there is no ${dangling.target} record "${dangling.id}" in the import`,
        },
      ]);
    }
    await this.scope.query(
      sql`update workspaces set policy_set_version = policy_set_version + 1 where id = ${this.scope.workspaceId}::uuid`,
    );
    return {
      workspaceId: this.scope.workspaceId,
      lines: this.lines,
      imported: this.imported,
      triggerSecrets: this.triggerSecrets,
    };
  }
}
