import type { RequestHandler } from 'express';
import { ProblemError, type FieldError } from './errors.ts';
import { escapePointer, storable, unstorableText } from './json.ts';

/**
 * Text PostgreSQL cannot take (NUL, lone surrogates) and nesting deeper than `maxDepth`, found
 * before any of it reaches a query: such input is the client's error, never a 500 or a broken
 * connection. At most 20 findings.
 */
export function unstorableValues(value: unknown, options: { pointer: string; in: FieldError['in']; maxDepth: number }, depth = 0, errors: FieldError[] = []): FieldError[] {
  if (errors.length >= 20) return errors;
  const { pointer } = options;
  if (depth > options.maxDepth) {
    errors.push({ pointer, in: options.in, detail: `nests deeper than ${options.maxDepth} levels` });
  } else if (typeof value === 'string') {
    if (!storable(value)) errors.push({ pointer, in: options.in, detail: unstorableText });
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => unstorableValues(item, { ...options, pointer: `${pointer}/${index}` }, depth + 1, errors));
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const at = `${pointer}/${escapePointer(key)}`;
      if (!storable(key)) errors.push({ pointer: at, in: options.in, detail: 'a key may not contain NUL characters or lone surrogates' });
      else unstorableValues(item, { ...options, pointer: at }, depth + 1, errors);
    }
  }
  return errors;
}

/** The first guard of every route: path, query and body text that PostgreSQL could not store are a 400. */
export const refuseUnstorableInput: RequestHandler = (request, _response, next) => {
  const errors = [
    ...unstorableValues(request.params, { pointer: '', in: 'params', maxDepth: 1 }),
    ...unstorableValues(request.query, { pointer: '', in: 'query', maxDepth: 4 }),
    ...unstorableValues(request.body ?? {}, { pointer: '', in: 'body', maxDepth: 64 }),
  ];
  if (errors.length) throw new ProblemError('validation_failed', 'The request contains text that cannot be stored, or nests too deeply', { errors });
  next();
};
