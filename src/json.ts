import { z } from 'zod';

/** JSON as requests carry it and PostgreSQL stores it: pointers, objects, storable text, ids. */

/** One RFC 6901 reference token, escaped for a JSON Pointer. */
export const escapePointer = (token: PropertyKey): string => String(token).replaceAll('~', '~0').replaceAll('/', '~1');

/** A JSON object: neither null nor an array. */
export const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** PostgreSQL's text and JSON hold neither NUL nor lone surrogates, so no stored value could equal them. */
export const storable = (text: string): boolean => text.isWellFormed() && !text.includes('\u0000');

export const unstorableText = 'text may not contain NUL characters or lone surrogates';

/** A UUID as PostgreSQL prints it (lowercase): the only spelling stored ids and references have. */
export const canonicalUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Any spelling of a UUID (a URL may carry uppercase); compare after lowercasing it. */
export const isUuid = (value: string): boolean => canonicalUuid.test(value.toLowerCase());

/**
 * A workspace slug: 2–63 characters of a-z, 0-9 and "-", starting with a letter or digit. A slug
 * must also not be a uuid (ids and slugs share the URL).
 */
export const slugPattern = /^[a-z0-9][a-z0-9-]{1,62}$/;

/** What a URL may name a workspace by: its id (any case) or its slug. Nothing else can name one. */
export const isWorkspaceReference = (value: string): boolean => slugPattern.test(value) || isUuid(value);

/**
 * zod's record drops a `__proto__` key without a word: a condition `{ "__proto__": … }` would
 * become `{}`, which every record meets, and a record's data would lose it silently. This refuses
 * the key, with its pointer, before the record schema sees the object: at its top level, or with
 * `deep` at any depth (conditions, whose nested keys are fields too).
 */
export const refusingProtoKey = <Schema extends z.ZodType>(
  record: Schema,
  { deep = false, message = '"__proto__" cannot be a key' }: { deep?: boolean; message?: string } = {},
) =>
  z.preprocess((value, context) => {
    const pending: { node: unknown; path: PropertyKey[] }[] = [{ node: value, path: [] }];
    for (let next = pending.pop(); next; next = pending.pop()) {
      if (typeof next.node !== 'object' || next.node === null) continue;
      const array = Array.isArray(next.node);
      for (const [key, item] of Object.entries(next.node)) {
        const path = [...next.path, array ? Number(key) : key];
        if (key === '__proto__') context.addIssue({ code: 'custom', path, message, input: item });
        else if (deep) pending.push({ node: item, path });
      }
    }
    return value;
  }, record);
