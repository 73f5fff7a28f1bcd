import express, { type RequestHandler } from 'express';
import { ProblemError } from './errors.ts';

const jsonTypes = ['application/json', 'application/*+json'];
/** Newline-delimited JSON is left unparsed here: the one route that takes it (an import) reads it as a stream. */
const streamedTypes = ['application/x-ndjson'];

/** A request that carries a body must say it is JSON; anything else is a 415, not a guess. */
export const requireJsonBody: RequestHandler = (request, _response, next) => {
  const hasBody =
    Number(request.headers['content-length'] ?? 0) > 0 || request.headers['transfer-encoding'] !== undefined;
  if (hasBody && !request.is([...jsonTypes, ...streamedTypes])) {
    throw new ProblemError('unsupported_media_type', 'Send the body as application/json');
  }
  next();
};

export const parseJsonBody = (limit: string): RequestHandler => express.json({ type: jsonTypes, limit, strict: true });
