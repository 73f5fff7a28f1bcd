import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';
import { functionBody } from '../functions/functions.schema.ts';
import { identityProviderBody } from '../identity-providers/identity-providers.schema.ts';
import { createMemberBody } from '../members/members.schema.ts';
import { policyBody } from '../policies/policies.schema.ts';
import { structureBody, structureName } from '../structures/structures.schema.ts';
import { triggerBody, type WebhookUrlRules } from '../triggers/triggers.schema.ts';

/**
 * One line of an export (and of an import, and of a template): `{ kind, data }`. `data` is what
 * the feature's create route takes, plus the fields the server owns (ids, versions, authors,
 * timestamps), which an import keeps. A template may leave those out: they are then given as a
 * create would give them.
 */
export const lineKinds = [
  'structure',
  'policy',
  'identityProvider',
  'member',
  'function',
  'trigger',
  'record',
] as const;
export type LineKind = (typeof lineKinds)[number];

export const line = z.strictObject({ kind: z.string(), data: z.record(z.string(), z.unknown()) });

/** A time the API can show: in UTC between the years 1 and 9999 (ISO 8601 without an expanded year). */
const at = z.iso
  .datetime({ offset: true })
  .refine((value) => {
    const year = new Date(value).getUTCFullYear();
    return year >= 1 && year <= 9999;
  }, 'must fall between the years 1 and 9999 in UTC')
  .optional();
const version = z.int().min(1).max(2_147_483_647).optional();
const id = z.uuid().optional();
const author = z.string().min(1).max(500).optional();

/** The server-owned fields each kind keeps, split off before the create body's strict schema sees the rest. */
export const ownedFields = {
  structure: z.strictObject({ version, createdAt: at, updatedAt: at }),
  policy: z.strictObject({ id, version, createdAt: at, updatedAt: at, updatedBy: author }),
  identityProvider: z.strictObject({ id, version, createdAt: at, updatedAt: at }),
  member: z.strictObject({ invitedBy: author.nullable(), joinedAt: at, updatedAt: at }),
  function: z.strictObject({ version, createdAt: at, updatedAt: at }),
  trigger: z.strictObject({
    id,
    version,
    createdAt: at,
    updatedAt: at,
    disabledReason: z.string().max(500).nullable().optional(),
  }),
  record: z.strictObject({ id, createdBy: author, createdAt: at, updatedAt: at, version }),
} as const satisfies Record<LineKind, z.ZodObject>;

export const createBodies = (urls: WebhookUrlRules) =>
  ({
    structure: structureBody,
    policy: policyBody,
    identityProvider: identityProviderBody(urls.production),
    member: createMemberBody,
    function: functionBody,
    trigger: triggerBody(urls),
    record: z.strictObject({ structure: structureName, data: refusingProtoKey(z.record(z.string(), z.unknown())) }),
  }) as const satisfies Record<LineKind, z.ZodType>;

export const importQuery = z.strictObject({
  identityProviders: z
    .enum(['import', 'skip'])
    .default('import')
    .describe(
      "skip: leave the export's identity providers out (a copy beside its source, whose (issuer, orgId) bindings stay with it)",
    ),
});

export const importResponse = z.object({
  workspaceId: z.uuid(),
  lines: z.number().int().describe('Lines read'),
  imported: z.record(z.enum(lineKinds), z.number().int()).describe('Rows written, by kind'),
  triggerSecrets: z
    .array(z.object({ id: z.uuid(), name: z.string(), secret: z.string() }))
    .describe('New signing secrets of the imported webhook triggers (exports carry none), shown this once'),
});
export type ImportResponse = z.output<typeof importResponse>;

export const templateName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a template name');

export const templateResponse = z.object({
  name: z.string(),
  title: z.string(),
  description: z.string(),
  structures: z.array(z.string()),
  records: z.int(),
});
export const templateListResponse = z.object({ data: z.array(templateResponse) });
export type TemplateResponse = z.output<typeof templateResponse>;

/** A template file: what it is, and the lines an import would take. */
export const templateFile = z.strictObject({
  title: z.string().min(1).max(200),
  description: z.string().max(2_000).default(''),
  lines: z.array(line).min(1),
});
