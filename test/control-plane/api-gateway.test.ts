import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createApiHandler, localSigningSecretStore, newApiKey } from '../../core/control/index.ts';
import { parseConfigText } from '../../core/index.ts';
import { fromApiGatewayEvent, toApiGatewayResult } from '../../functions/api/adapter.ts';
import { startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';

/** An HTTP API (payload format 2.0) event as API Gateway sends it. */
function event(
  method: string,
  rawPath: string,
  options: { key?: string; body?: string; base64?: boolean; query?: string } = {},
): APIGatewayProxyEventV2 {
  const body =
    options.body === undefined
      ? undefined
      : options.base64
        ? Buffer.from(options.body).toString('base64')
        : options.body;
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: options.query ?? '',
    headers: {
      host: 'abc123.execute-api.us-east-1.amazonaws.com',
      'content-type': 'application/json',
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
    },
    ...(options.query
      ? { queryStringParameters: Object.fromEntries(new URLSearchParams(options.query)) }
      : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '198.51.100.1', userAgent: 'curl/8' },
      requestId: 'req-1',
      routeKey: '$default',
      stage: '$default',
      time: '04/Dec/2026:00:00:00 +0000',
      timeEpoch: 1_796_000_000_000,
    },
    body,
    isBase64Encoded: options.base64 ?? false,
  };
}

describe('API Gateway HTTP API adapter', () => {
  let t: TestControlStore;
  let key: string;
  let handle: ReturnType<typeof createApiHandler>;

  before(async () => {
    t = await startTestControlStore();
    const made = newApiKey('lambda', 'full', new Date());
    await t.store.createKey(made.stored);
    key = made.secret;
    handle = createApiHandler({
      store: t.store,
      config: parseConfigText(
        `{"domains":["example.test"],"listeners":[{"port":0,"mode":"mx"}],"health":{"port":0},"tls":{"source":"files","certFile":"c.pem","keyFile":"k.pem"},"routes":[{"id":"inbox","match":["*@example.test"],"endpoints":["https://inbox.test/"],"secret":{"env":"S"}}]}`,
        { source: 'test.json', runtime: 'aws' },
      ),
      runtime: 'aws',
      mxHost: 'mx.example.net',
      resolver: async () => [],
      secrets: localSigningSecretStore,
      retry: { retry: async () => [] },
      presign: async () => 'https://signed.example/raw',
    });
  });
  after(() => t.close());

  const run = async (e: APIGatewayProxyEventV2) => toApiGatewayResult(await handle(fromApiGatewayEvent(e)));

  it('serves a request and answers with a result API Gateway returns as is', async () => {
    const result = await run(event('GET', '/v1/routes', { key, query: 'limit=10' }));
    assert.equal(result.statusCode, 200);
    assert.equal(result.headers?.['content-type'], 'application/json');
    assert.equal(JSON.parse(result.body!).items[0].id, 'inbox');
  });

  it('decodes a base64 body and applies the AWS endpoint rules to API routes', async () => {
    const body = JSON.stringify({
      id: 'edge',
      match: ['edge@example.test'],
      endpoints: ['http://127.0.0.1/hook'],
    });
    const refused = await run(event('POST', '/v1/routes', { key, body, base64: true }));
    assert.equal(refused.statusCode, 400);
    assert.match(JSON.parse(refused.body!).error.message, /^body\.endpoints\[0\]: must be https/);
    const ok = JSON.stringify({
      id: 'edge',
      match: ['edge@example.test'],
      endpoints: ['https://edge.test/hook'],
    });
    assert.equal((await run(event('POST', '/v1/routes', { key, body: ok, base64: true }))).statusCode, 201);
  });

  it('answers 401 to a request without a key', async () => {
    assert.equal((await run(event('GET', '/v1/messages'))).statusCode, 401);
  });
});
