import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';
import { pageQuery } from '../../http/cursor.ts';

export const recordsParams = z.object({ ws: z.string().min(1).max(100), structure: z.string().min(1).max(100) });
export const recordParams = recordsParams.extend({ id: z.string().min(1).max(100) });

/** Fields the server owns: naming one in a body is refused, never silently ignored. */
const serverOwned = new Set(['id', 'structure', 'createdBy', 'createdAt', 'updatedAt', 'version', 'workspaceId']);

const recordBody = (data: z.ZodType) =>
  z
    .looseObject({ data })
    .superRefine((body, context) => {
      for (const key of Object.keys(body)) {
        if (key === 'data') continue;
        context.addIssue({
          code: 'custom',
          path: [key],
          message: serverOwned.has(key)
            ? `"${key}" is set by the server and cannot be sent`
            : `unknown property "${key}"; the record's fields go in "data"`,
        });
      }
    })
    .transform((body) => ({ data: body.data as Record<string, unknown> }));

export const createRecordBody = recordBody(refusingProtoKey(z.record(z.string(), z.unknown())));
/** A JSON merge patch (RFC 7396) of the record's data: `null` removes a field. */
export const patchRecordBody = recordBody(refusingProtoKey(z.record(z.string(), z.unknown())));

export const listQuery = pageQuery.extend({
  filter: z.string().max(10_000).optional().describe('JSON: a MongoDB-style query over data and system fields'),
  sort: z.string().max(300).optional().describe('Comma-separated fields, "-" for descending; default -createdAt'),
  cursor: z.string().max(4_000).optional(),
});
export type ListQuery = z.output<typeof listQuery>;

export const recordResponse = z.object({
  id: z.uuid(),
  structure: z.string(),
  data: z.record(z.string(), z.unknown()),
  createdBy: z.string(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  version: z.number().int(),
});
export type RecordResponse = z.output<typeof recordResponse>;

export const recordListResponse = z.object({
  data: z.array(recordResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});
