import type { RequestHandler } from 'express';
import { ProblemError, type FieldError } from './errors.ts';
import { escapePointer, storable, unstorableText } from '../json.ts';

/**
 * Text PostgreSQL cannot take (NUL, lone surrogates) and nesting deeper than `maxDepth`, found
 * before any of it reaches a query: such input is the client's error, never a 500 or a broken
 * connection. At most 20 findings. The walk keeps the path as tokens and spells a pointer only
 * for a finding: it runs on every request body.
 */
export function unstorableValues(
  value: unknown,
  options: { pointer: string; in: FieldError['in']; maxDepth: number },
): FieldError[] {
  const errors: FieldError[] = [];
  const path: (string | number)[] = [];
  const found = (detail: string) =>
    errors.push({
      pointer: options.pointer + path.map((token) => `/${escapePointer(token)}`).join(''),
      in: options.in,
      detail,
    });
  const visit = (node: unknown, depth: number): void => {
    if (errors.length >= 20) return;
    if (depth > options.maxDepth) {
      found(`nests deeper than ${options.maxDepth} levels`);
    } else if (typeof node === 'string') {
      if (!storable(node)) found(unstorableText);
    } else if (Array.isArray(node)) {
      for (let index = 0; index < node.length; index += 1) {
        path.push(index);
        visit(node[index], depth + 1);
        path.pop();
      }
    } else if (typeof node === 'object' && node !== null) {
      for (const key of Object.keys(node)) {
        path.push(key);
        if (!storable(key)) found('a key may not contain NUL characters or lone surrogates');
        else visit((node as Record<string, unknown>)[key], depth + 1);
        path.pop();
      }
    }
  };
  visit(value, 0);
  return errors;
}

/** The first guard of every route: path, query and body text that PostgreSQL could not store are a 400. */
export const refuseUnstorableInput: RequestHandler = (request, _response, next) => {
  const errors = [
    ...unstorableValues(request.params, { pointer: '', in: 'params', maxDepth: 1 }),
    ...unstorableValues(request.query, { pointer: '', in: 'query', maxDepth: 4 }),
    // A raw body (Stripe's webhook) is bytes to verify, not values to store.
    ...(Buffer.isBuffer(request.body)
      ? []
      : unstorableValues(request.body ?? {}, { pointer: '', in: 'body', maxDepth: 64 })),
  ];
  if (errors.length)
    throw new ProblemError(
      'validation_failed',
      'The request contains text that cannot be stored, or nests too deeply',
      { errors },
    );
  next();
};
