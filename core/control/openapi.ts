import type { ZodType } from 'zod';
import * as z from 'zod';
import type { Operation } from './api.ts';
import { ErrorSchema } from './schemas.ts';

/** Where the published OpenAPI document lives in the repository. */
export const OPENAPI_DOCUMENT_PATH = 'schema/openapi.v1.json';

type JsonSchema = Record<string, unknown>;

const jsonSchema = (schema: ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/**
 * The OpenAPI 3.1 document of the operations, generated from the zod schemas they validate with
 * (JSON Schema 2020-12, as OpenAPI 3.1 uses): requests as input schemas (what a client may send,
 * defaults optional), responses as output schemas.
 */
export function openApiDocument(operations: readonly Operation[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of operations) {
    const pathParameters = [...operation.path.matchAll(/\{(\w+)\}/g)].map(([, name]) => ({
      name,
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const queryParameters = Object.entries(operation.query?.shape ?? {}).map(([name, field]) => {
      const schema = jsonSchema(field as ZodType, 'input');
      const { description, ...rest } = schema;
      return {
        name,
        in: 'query',
        required: !(field as ZodType).safeParse(undefined).success,
        ...(description ? { description } : {}),
        schema: rest,
      };
    });
    const responses: Record<string, unknown> = {};
    for (const [status, { description, schema }] of Object.entries(operation.responses)) {
      responses[status] = schema
        ? { description, content: { 'application/json': { schema: jsonSchema(schema, 'output') } } }
        : { description };
    }
    Object.assign(responses, {
      400: errorResponse('Bad input; the message names the field'),
      401: errorResponse('No valid API key'),
      ...(operation.method === 'GET' ? {} : { 403: errorResponse('The key is read-only') }),
      ...(operation.path.includes('{') ? { 404: errorResponse('Not found') } : {}),
      ...(operation.method === 'GET'
        ? {}
        : { 409: errorResponse('Conflict: read-only, taken, or changed meanwhile') }),
      500: errorResponse('Internal error (the store or Secrets Manager failed); the logs have it'),
    });
    paths[operation.path] ??= {};
    paths[operation.path]![operation.method.toLowerCase()] = {
      operationId: operation.operationId,
      summary: operation.summary,
      ...(pathParameters.length + queryParameters.length > 0
        ? { parameters: [...pathParameters, ...queryParameters] }
        : {}),
      ...(operation.body
        ? {
            requestBody: {
              // An absent body is read as `{}`: required when `{}` is not a valid one.
              required: !operation.body.safeParse({}).success,
              content: { 'application/json': { schema: jsonSchema(operation.body, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'mailbridge control plane',
      version: '1',
      description:
        'The message log, SMTP refusals, routes, domains and API keys of a mailbridge deployment. Every request needs `Authorization: Bearer mbk_…`; read-only keys may only GET. Errors are `{ "error": { "code", "message" } }`.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    // Relative: the origin that serves this document (the stack output ApiUrl's, or 127.0.0.1:8027).
    servers: [{ url: '/', description: 'The origin that serves this document' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API key, mbk_…' } },
      schemas: { Error: jsonSchema(ErrorSchema, 'output') },
    },
  };
}
