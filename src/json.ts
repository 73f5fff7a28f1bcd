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
