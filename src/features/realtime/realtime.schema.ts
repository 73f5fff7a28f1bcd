import { z } from 'zod';

const structureList = z
  .string()
  .min(1)
  .max(2_000)
  .transform((value) => [...new Set(value.split(',').map((name) => name.trim()))])
  .pipe(
    z
      .array(z.string().regex(/^[A-Z][A-Za-z0-9]{0,63}$/, 'must be a structure name (PascalCase)'))
      .min(1)
      .max(20, 'at most 20 structures per stream'),
  )
  .describe('Comma-separated structure names, e.g. Task,Project');

export const streamParams = z.object({ ws: z.string().min(1).max(100) });

export const streamQuery = z.strictObject({
  structures: structureList,
  lastEventId: z
    .string()
    .regex(/^\d{1,19}$/, 'must be the id (seq) of an event')
    .optional()
    .describe('Resume after this event (the Last-Event-ID header wins when both are sent)'),
  access_token: z
    .string()
    .min(1)
    .optional()
    .describe("The user's token, for a browser's EventSource (which cannot send headers); never logged"),
});

export const streamResponse = z
  .string()
  .describe(
    'Server-Sent Events: `id: <seq>`, `event: record_created | record_updated | record_deleted | reset | token_expired | error`, `data: <JSON>`',
  );
