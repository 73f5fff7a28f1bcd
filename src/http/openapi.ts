import { z } from 'zod';
import type { RouteDefinition, Security } from './api.ts';

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

const localRef = (name: string) => `"#/$defs/${name}"`;
const jsonValue = JSON.stringify(toSchema(z.json(), 'output'));

/**
 * zod puts a recursive schema (`z.json()`) in the converted schema's own `$defs` and refers to it
 * as `#/$defs/…`; in an OpenAPI document `#` is the whole document, so such a ref would dangle.
 * The definitions move to `components.schemas`, one component per distinct definition.
 */
class Components {
  readonly schemas: Record<string, JsonSchema> = { Problem: problemSchema };
  private readonly byContent = new Map<string, string>();

  schema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
    const { $defs, ...rest } = toSchema(schema, io) as { $defs?: Record<string, JsonSchema> };
    if (!$defs) return rest;
    const names = Object.entries($defs).map(([local, definition]) => [local, this.nameOf(local, definition)] as const);
    const rewritten = (value: JsonSchema): JsonSchema =>
      JSON.parse(
        names.reduce(
          (text, [local, name]) => text.replaceAll(localRef(local), `"#/components/schemas/${name}"`),
          JSON.stringify(value),
        ),
      ) as JsonSchema;
    for (const [local, name] of names) this.schemas[name] ??= rewritten($defs[local]!);
    return rewritten(rest);
  }

  private nameOf(local: string, definition: JsonSchema): string {
    const content = JSON.stringify(definition).replaceAll(localRef(local), '"#"');
    let name = this.byContent.get(content);
    if (!name) {
      name = content === jsonValue ? 'JsonValue' : `Definition${this.byContent.size + 1}`;
      this.byContent.set(content, name);
    }
    return name;
  }
}

/** `/v1/workspaces/:ws` → `/v1/workspaces/{ws}` */
export const openApiPath = (expressPath: string) => expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

const problemSchema: JsonSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'code', 'requestId'],
  properties: {
    type: { type: 'string', format: 'uri' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    requestId: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { pointer: { type: 'string' }, in: { type: 'string' }, detail: { type: 'string' } },
      },
    },
  },
};

const securityRequirement: Record<Security, Record<string, string[]>[]> = {
  admin: [{ adminKey: [] }],
  bearer: [{ bearerToken: [] }],
  adminOrBearer: [{ adminKey: [] }, { bearerToken: [] }],
  bearerOrQuery: [{ bearerToken: [] }, { accessTokenQuery: [] }],
  none: [],
};

function parameters(components: Components, schema: z.ZodType | undefined, location: 'path' | 'query') {
  if (!schema) return [];
  const json = components.schema(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || (json.required ?? []).includes(name),
    schema: property,
  }));
}

function operation(components: Components, route: RouteDefinition) {
  const responses = Object.fromEntries(
    Object.entries(route.responses).map(([status, response]) => [
      status,
      {
        description: response.description,
        ...(response.schema
          ? {
              content: {
                [response.contentType ?? 'application/json']: { schema: components.schema(response.schema, 'output') },
              },
            }
          : {}),
      },
    ]),
  );
  return {
    summary: route.summary,
    tags: [route.tag],
    security: securityRequirement[route.security],
    parameters: [...parameters(components, route.params, 'path'), ...parameters(components, route.query, 'query')],
    ...(route.body
      ? {
          requestBody: {
            required: true,
            content: { 'application/json': { schema: components.schema(route.body, 'input') } },
          },
        }
      : {}),
    responses: {
      ...responses,
      default: {
        description: 'Problem',
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      },
    },
  };
}

export function openApiDocument(routes: readonly RouteDefinition[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  const components = new Components();
  for (const route of routes) {
    const path = openApiPath(route.path);
    paths[path] = { ...paths[path], [route.method]: operation(components, route) };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Cordon', version, description: 'Multi-tenant authorization and data service.' },
    paths,
    components: {
      schemas: components.schemas,
      securitySchemes: {
        adminKey: { type: 'http', scheme: 'bearer', description: 'The platform admin key (ADMIN_API_KEY).' },
        bearerToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A token from the workspace identity provider.',
        },
        accessTokenQuery: {
          type: 'apiKey',
          in: 'query',
          name: 'access_token',
          description: "The workspace user's token as a query parameter, for a browser's EventSource (never logged).",
        },
      },
    },
  };
}
