import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';
import { isSystemSubject, systemFields } from '../../policy/vocabulary.ts';

/** A structure's name is its policy subject, so it cannot be a system subject's. */
export const structureName = z
  .string()
  .regex(/^[A-Z][A-Za-z0-9]{0,63}$/, 'must be PascalCase: a capital letter, then up to 63 letters and digits')
  .refine((name) => !isSystemSubject(name), 'is the name of a system subject');

/** Names a record document already uses for its system fields, or that JSON handling makes unsafe. */
const reservedFieldNames = new Set<string>([...systemFields, 'version', 'structure', 'workspaceId', 'data']);
export const fieldName = z
  .string()
  .regex(/^[a-z][A-Za-z0-9_]{0,63}$/, 'must start with a lowercase letter, then up to 63 letters, digits or "_"')
  .refine((name) => !reservedFieldNames.has(name), 'is a system field name');

const common = { required: z.boolean().optional(), description: z.string().max(500).optional() };
const isoDateTime = z.iso.datetime({ offset: true });
/** Enum values, each once (0 and -0 are one value to JSON). */
const enumOf = <T extends z.ZodType<string | number>>(item: T) =>
  z
    .array(item)
    .min(1)
    .max(100)
    .refine(
      (values) => new Set(values.map((value) => (Object.is(value, -0) ? 0 : value))).size === values.length,
      'lists a value twice',
    );

export const fieldDefinition = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('text'),
    ...common,
    maxLength: z.number().int().min(1).max(100_000).optional(),
    enum: enumOf(z.string().max(1_000)).optional(),
    default: z.string().max(100_000).optional(),
  }),
  z.strictObject({
    type: z.literal('number'),
    ...common,
    min: z.number().optional(),
    max: z.number().optional(),
    enum: enumOf(z.number()).optional(),
    default: z.number().optional(),
  }),
  z.strictObject({
    type: z.literal('integer'),
    ...common,
    min: z.number().int().optional(),
    max: z.number().int().optional(),
    enum: enumOf(z.number().int()).optional(),
    default: z.number().int().optional(),
  }),
  z.strictObject({ type: z.literal('boolean'), ...common, default: z.boolean().optional() }),
  z.strictObject({ type: z.literal('datetime'), ...common, default: isoDateTime.optional() }),
  z.strictObject({ type: z.literal('json'), ...common, default: z.json().optional() }),
  z.strictObject({ type: z.literal('reference'), ...common, structure: structureName }),
]);
export type FieldDefinition = z.output<typeof fieldDefinition>;
export type Fields = Record<string, FieldDefinition>;

const fields = refusingProtoKey(z.record(fieldName, fieldDefinition)).refine(
  (value) => Object.keys(value).length <= 100,
  'a structure has at most 100 fields',
);

export const structureBody = z.strictObject({
  name: structureName,
  description: z.string().max(2_000).default(''),
  fields,
});
export type StructureInput = z.output<typeof structureBody>;

export const replaceStructureBody = structureBody.omit({ name: true });
export type StructureReplacement = z.output<typeof replaceStructureBody>;

export const structureParams = z.object({ ws: z.string().min(1).max(100), name: z.string().min(1).max(100) });
export const forceQuery = z.strictObject({
  force: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true')
    .describe('Apply even if stored records break'),
});

export const structureResponse = z.object({
  name: z.string(),
  description: z.string(),
  fields: z.record(z.string(), fieldDefinition),
  version: z.number().int(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type StructureResponse = z.output<typeof structureResponse>;
export const structureListResponse = z.object({
  data: z.array(structureResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});
