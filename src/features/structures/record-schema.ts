import { createHash } from 'node:crypto';
import { Ajv, type ErrorObject, type SchemaObject, type ValidateFunction } from 'ajv';
import { LRUCache } from 'lru-cache';
import type { FieldError } from '../../http/errors.ts';
import { canonicalUuid } from '../../json.ts';
import { unstorableValues } from '../../http/storable.ts';
import type { FieldDefinition, Fields } from './structures.schema.ts';

/**
 * A structure's fields as a JSON Schema, compiled by ajv once per structure version. Datetimes
 * are stored as canonical UTC ISO strings, so text order is time order in filters and sorts.
 */

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;
const isDateTime = (value: string) => rfc3339.test(value) && !Number.isNaN(Date.parse(value));

const ajv = new Ajv({ allErrors: true, strict: true, formats: { 'date-time': isDateTime, uuid: canonicalUuid } });

function fieldSchema(field: FieldDefinition): SchemaObject {
  switch (field.type) {
    case 'text':
      return {
        type: 'string',
        ...(field.maxLength !== undefined && { maxLength: field.maxLength }),
        ...(field.enum && { enum: field.enum }),
      };
    case 'number':
    case 'integer':
      return {
        type: field.type,
        ...(field.min !== undefined && { minimum: field.min }),
        ...(field.max !== undefined && { maximum: field.max }),
        ...(field.enum && { enum: field.enum }),
      };
    case 'boolean':
      return { type: 'boolean' };
    case 'datetime':
      return { type: 'string', format: 'date-time' };
    case 'json':
      return {};
    case 'reference':
      return { type: 'string', format: 'uuid' };
  }
}

function jsonSchemaOf(fields: Fields): SchemaObject {
  const names = Object.keys(fields);
  return {
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(names.map((name) => [name, fieldSchema(fields[name]!)])),
    required: names.filter((name) => fields[name]!.required),
  };
}

const describe = (error: ErrorObject): FieldError => {
  const base = `/data${error.instancePath}`;
  if (error.keyword === 'required')
    return { pointer: `${base}/${error.params.missingProperty as string}`, in: 'body', detail: 'is required' };
  if (error.keyword === 'additionalProperties') {
    return {
      pointer: `${base}/${error.params.additionalProperty as string}`,
      in: 'body',
      detail: 'is not a field of this structure',
    };
  }
  if (error.keyword === 'enum')
    return { pointer: base, in: 'body', detail: `must be one of ${JSON.stringify(error.params.allowedValues)}` };
  return { pointer: base, in: 'body', detail: error.message ?? 'is invalid' };
};

const maxDepth = 32;

/** Record data PostgreSQL cannot store, or nested deeper than records may be. */
export const unstorableData = (value: unknown) => unstorableValues(value, { pointer: '/data', in: 'body', maxDepth });

export interface RecordSchema {
  /** Errors with pointers into the request body (`/data/...`); none means valid. */
  validate(data: Record<string, unknown>): FieldError[];
  /** The data as stored: defaults filled in (creates only), datetimes in canonical UTC. */
  normalise(data: Record<string, unknown>, options: { defaults: boolean }): Record<string, unknown>;
}

interface CompiledSchema extends RecordSchema {
  source: SchemaObject;
}

function compile(fields: Fields): CompiledSchema {
  const source = jsonSchemaOf(fields);
  const check: ValidateFunction = ajv.compile(source);
  const datetimes = Object.keys(fields).filter((name) => fields[name]!.type === 'datetime');
  const defaults = Object.entries(fields).filter(([, field]) => 'default' in field && field.default !== undefined);
  return {
    source,
    validate(data) {
      const unstorable = unstorableData(data);
      if (unstorable.length) return unstorable;
      return check(data) ? [] : (check.errors ?? []).map(describe);
    },
    normalise(data, options) {
      const result = { ...data };
      if (options.defaults) {
        for (const [name, field] of defaults)
          if (!Object.hasOwn(result, name)) result[name] = structuredClone((field as { default: unknown }).default);
      }
      for (const name of datetimes) {
        const value = result[name];
        if (typeof value === 'string' && isDateTime(value)) result[name] = new Date(value).toISOString();
      }
      return result;
    },
  };
}

// ajv keeps every compiled schema until told otherwise: evicted versions are removed from it too.
const compiled = new LRUCache<string, CompiledSchema>({
  max: 5_000,
  dispose: (schema) => ajv.removeSchema(schema.source),
});

/**
 * One compiled schema per set of fields, named by their digest: what a schema checks is its fields
 * and nothing else. (A name and version do not tell fields apart: a structure deleted and made
 * again is version 1 again, and a rolled-back import compiled fields that were never saved.)
 * Called when a structure is loaded, not per record.
 */
export function recordSchema(fields: Fields): RecordSchema {
  const cacheKey = createHash('sha256').update(JSON.stringify(fields)).digest('base64url');
  let schema = compiled.get(cacheKey);
  if (!schema) {
    schema = compile(fields);
    compiled.set(cacheKey, schema);
  }
  return schema;
}

/** A schema for fields not saved yet (a proposed change); ajv forgets it once `use` is done. */
export async function withCandidateSchema<T>(fields: Fields, use: (schema: RecordSchema) => Promise<T>): Promise<T> {
  const schema = compile(fields);
  try {
    return await use(schema);
  } finally {
    ajv.removeSchema(schema.source);
  }
}

/** Schema checks for one field definition's own default value. */
export function defaultErrors(fields: Fields): FieldError[] {
  const errors: FieldError[] = [];
  for (const [name, field] of Object.entries(fields)) {
    if (!('default' in field) || field.default === undefined) continue;
    const source = fieldSchema(field);
    const check = ajv.compile(source);
    if (!check(field.default))
      errors.push({
        pointer: `/fields/${name}/default`,
        in: 'body',
        detail: `does not satisfy the field: ${check.errors?.[0]?.message ?? 'invalid'}`,
      });
    ajv.removeSchema(source);
  }
  return errors;
}
