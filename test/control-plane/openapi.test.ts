import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { OPENAPI_DOCUMENT_PATH, OPERATIONS, openApiDocument } from '../../core/control/index.ts';

type Schema = Record<string, unknown>;
interface OperationObject {
  operationId: string;
  parameters?: { schema: Schema }[];
  requestBody?: { required: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
}

const published = JSON.parse(
  readFileSync(new URL(`../../${OPENAPI_DOCUMENT_PATH}`, import.meta.url), 'utf8'),
);

describe('OpenAPI document', () => {
  it(`is what the schemas generate (regenerate with npm run openapi): ${OPENAPI_DOCUMENT_PATH}`, () => {
    assert.deepEqual(published, JSON.parse(JSON.stringify(openApiDocument(OPERATIONS))));
  });

  it('documents every operation once, each with JSON Schemas a 2020-12 validator compiles', () => {
    const ajv = new Ajv2020({ strict: false });
    const seen = new Set<string>();
    for (const [path, methods] of Object.entries(
      published.paths as Record<string, Record<string, OperationObject>>,
    )) {
      for (const [method, operation] of Object.entries(methods)) {
        assert.ok(!seen.has(operation.operationId), operation.operationId);
        seen.add(operation.operationId);
        for (const parameter of operation.parameters ?? []) ajv.compile(parameter.schema);
        const body = operation.requestBody?.content['application/json']?.schema;
        if (body) ajv.compile(body);
        for (const [status, response] of Object.entries(operation.responses)) {
          const schema = response.content?.['application/json']?.schema;
          if (schema && !schema.$ref) ajv.compile(schema);
          assert.ok(response.description, `${method} ${path} ${status}`);
        }
      }
    }
    assert.equal(seen.size, OPERATIONS.length);
  });

  it('marks a body required where the API refuses an empty one, optional where it takes one', () => {
    const paths = published.paths as Record<string, Record<string, OperationObject>>;
    const required = (path: string, method: string) => paths[path]![method]!.requestBody!.required;
    assert.equal(required('/v1/routes', 'post'), true, 'a route needs match and endpoints');
    assert.equal(required('/v1/domains', 'post'), true);
    assert.equal(required('/v1/keys', 'post'), true);
    assert.equal(required('/v1/messages/{id}/retry', 'post'), false, 'no body: every route');
    assert.deepEqual(published.servers, [{ url: '/', description: 'The origin that serves this document' }]);
  });
});
