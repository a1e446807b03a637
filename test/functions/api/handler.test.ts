import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { newApiKey } from '../../../core/control/index.ts';
import { newMessageId, parseConfigText } from '../../../core/index.ts';
import { createApiFunctionHandler } from '../../../functions/api/index.ts';
import { apiGatewayEvent, presignOnlyS3Client } from '../../../harness/api-gateway.ts';
import {
  receivedEvent,
  startTestControlStore,
  type TestControlStore,
} from '../../../harness/control-store.ts';
import {
  type SecretsManagerService,
  secretsManagerClient,
  startSecretsManager,
} from '../../../harness/secrets-manager.ts';

const CONFIG = parseConfigText(readFileSync('infra/example/mailbridge.yaml', 'utf8'), {
  source: 'mailbridge.yaml',
  runtime: 'aws',
});

describe('the API function: the API over DynamoDB, Secrets Manager and S3 links', () => {
  let control: TestControlStore;
  let secrets: SecretsManagerService & { url: string; close(): Promise<void> };
  let secretsClient: SecretsManagerClient;
  let key: string;
  let handle: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;
  const call = async (method: string, path: string, body?: unknown) => {
    const result = await handle(apiGatewayEvent(method, path, { authorization: `Bearer ${key}` }, body));
    return { status: result.statusCode, body: result.body ? JSON.parse(result.body) : undefined };
  };

  before(async () => {
    control = await startTestControlStore();
    secrets = await startSecretsManager();
    secretsClient = secretsManagerClient(secrets.url);
    const made = newApiKey('ops', 'full', new Date());
    await control.store.createKey(made.stored);
    key = made.secret;
    handle = createApiFunctionHandler({
      store: control.store,
      s3: presignOnlyS3Client(),
      secretsManager: secretsClient,
      config: CONFIG,
      runtime: 'aws',
      retry: { retry: async () => [] },
      resolver: async () => [],
    });
  });
  after(async () => {
    secretsClient.destroy();
    await secrets.close();
    await control.close();
  });

  it('lists the config routes as read-only, and creates an API route whose signing secret is in Secrets Manager', async () => {
    const listed = await call('GET', '/v1/routes');
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.items.map((r: { id: string; source: string }) => [r.id, r.source]),
      [
        ['support', 'config'],
        ['catch-all', 'config'],
      ],
    );
    const created = await call('POST', '/v1/routes', {
      id: 'tenant-a',
      match: ['*@tenant-a.example'],
      endpoints: ['https://tenant-a.example/hook'],
    });
    assert.equal(created.status, 201);
    const [{ id: secretId }] = created.body.signingSecrets;
    const name = `mailbridge/routes/tenant-a/${secretId}`;
    assert.equal(
      secrets.secrets.get(name),
      created.body.signingSecret,
      'the value shown once is the one stored',
    );
    assert.match(created.body.signingSecret, /^whsec_/);
    // The route keeps the reference, never the value: what deliver resolves.
    const stored = await control.store.getRoute('tenant-a');
    assert.deepEqual(
      stored!.secrets.map((s) => s.ref),
      [{ secretsManager: name }],
    );
  });

  it('a rotation with no overlap drops the old secret and schedules its deletion from Secrets Manager at once', async () => {
    const first = (await control.store.getRoute('tenant-a'))!.secrets[0]!;
    const firstName = (first.ref as { secretsManager: string }).secretsManager;
    const overlapping = await call('POST', '/v1/routes/tenant-a/secrets', { overlapSeconds: 3600 });
    assert.equal(overlapping.body.signingSecrets.length, 2, 'the old one signs through the overlap');
    assert.equal(secrets.deleted.has(firstName), false);
    const ended = await call('POST', '/v1/routes/tenant-a/secrets', { overlapSeconds: 0 });
    assert.equal(ended.status, 201);
    assert.equal(ended.body.signingSecrets.length, 1, 'only the newest is left');
    assert.equal(secrets.deleted.get(firstName), 7);
  });

  it('deleting the route schedules the deletion of every secret it still had', async () => {
    const { secrets: left } = (await control.store.getRoute('tenant-a'))!;
    assert.equal((await call('DELETE', '/v1/routes/tenant-a')).status, 204);
    for (const secret of left) {
      assert.equal(secrets.deleted.get((secret.ref as { secretsManager: string }).secretsManager), 7);
    }
    assert.equal((await call('GET', '/v1/routes/tenant-a')).status, 404);
  });

  it('when Secrets Manager refuses to create the secret, the route is not created', async () => {
    secrets.failNext('CreateSecret', {
      type: 'AccessDeniedException',
      message: 'User is not authorized to perform: secretsmanager:CreateSecret',
    });
    const refused = await call('POST', '/v1/routes', {
      id: 'tenant-b',
      match: ['*@tenant-b.example'],
      endpoints: ['https://tenant-b.example/hook'],
    });
    assert.equal(refused.status, 500);
    assert.equal(refused.body.error.code, 'internal');
    assert.equal((await call('GET', '/v1/routes/tenant-b')).status, 404);
  });

  it('links a message to its raw copy for 15 minutes', async () => {
    const id = newMessageId();
    await control.store.appendEvents(id, [receivedEvent()], {
      bucket: 'mail-bucket',
      key: `raw/2026/12/04/${id}.eml`,
    });
    const shown = await call('GET', `/v1/messages/${id}`);
    assert.equal(shown.status, 200);
    const url = new URL(shown.body.raw.url);
    assert.equal(url.pathname, `/mail-bucket/raw/2026/12/04/${id}.eml`);
    assert.equal(url.searchParams.get('X-Amz-Expires'), '900');
  });
});
