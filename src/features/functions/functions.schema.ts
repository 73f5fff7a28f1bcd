import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';

export const functionLimits = { timeoutMs: { max: 10_000, default: 1_000 }, memoryMb: { max: 64, default: 16 } };

export const functionName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be lowercase: a letter, then up to 62 letters, digits or "-"');

const settings = {
  code: z.string().min(1).max(100_000).describe('JavaScript defining async function run(event, context)'),
  roles: z
    .array(z.string().min(1).max(100))
    .max(20)
    .default([])
    .refine((roles) => new Set(roles).size === roles.length, 'lists a role twice')
    .describe('The roles the function acts with (its principal is function:<name>); none: it can do nothing'),
  timeoutMs: z
    .number()
    .int()
    .min(10)
    .max(functionLimits.timeoutMs.max)
    .default(functionLimits.timeoutMs.default)
    .describe('Wall-clock deadline of a run, api calls included'),
  memoryMb: z
    .number()
    .int()
    .min(2)
    .max(functionLimits.memoryMb.max)
    .default(functionLimits.memoryMb.default)
    .describe("Memory limit of a run's sandbox"),
};

export const functionBody = z.strictObject({ name: functionName, ...settings });
export type FunctionInput = z.output<typeof functionBody>;

export const replaceFunctionBody = z.strictObject(settings);
export type FunctionReplacement = z.output<typeof replaceFunctionBody>;

export const functionParams = z.object({ ws: z.string().min(1).max(100), name: z.string().min(1).max(100) });

export const functionResponse = z.object({
  name: z.string(),
  code: z.string(),
  roles: z.array(z.string()),
  timeoutMs: z.number().int(),
  memoryMb: z.number().int(),
  version: z.number().int(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type FunctionResponse = z.output<typeof functionResponse>;
export const functionListResponse = z.object({
  data: z.array(functionResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});

/** The event a run is given by hand: any event's shape, in this workspace. */
export const invokeBody = z.strictObject({
  event: z
    .looseObject({
      type: z.string().min(1).max(100),
      data: refusingProtoKey(z.record(z.string(), z.unknown())).default({}),
      depth: z.number().int().min(0).max(100).default(0),
    })
    .describe('The event run(event) receives, e.g. { type: "record_updated", data: { before, after } }'),
});
export type InvokeInput = z.output<typeof invokeBody>;

const logLine = z.object({ level: z.enum(['log', 'info', 'warn', 'error']), message: z.string() });
const runError = z.object({
  kind: z.enum(['invalid', 'error', 'timeout', 'memory', 'stack', 'result', 'stalled', 'crashed', 'busy']),
  message: z.string(),
});

export const invokeResponse = z.object({
  runId: z.uuid(),
  status: z.enum(['succeeded', 'failed']),
  result: z.json().nullable(),
  error: runError.nullable(),
  logs: z.array(logLine),
  logsTruncated: z.boolean(),
  durationMs: z.number(),
});
export type InvokeResponse = z.output<typeof invokeResponse>;

export const runResponse = z.object({
  id: z.uuid(),
  function: z.string(),
  functionVersion: z.number().int(),
  status: z.enum(['succeeded', 'failed']),
  invoked: z.boolean(),
  triggerId: z.uuid().nullable(),
  deliveryId: z.uuid().nullable(),
  eventSeq: z.string().nullable(),
  result: z.json().nullable(),
  error: runError.nullable(),
  logs: z.array(logLine),
  logsTruncated: z.boolean(),
  durationMs: z.number(),
  startedAt: z.iso.datetime(),
});
export type RunResponse = z.output<typeof runResponse>;
export const runListResponse = z.object({
  data: z.array(runResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});
