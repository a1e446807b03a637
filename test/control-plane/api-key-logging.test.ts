import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { newApiKey } from '../../core/control/index.ts';
import { parseConfigText } from '../../core/index.ts';
import { startLocalRuntime } from '../../dev/index.ts';
import { createApiFunctionHandler } from '../../functions/api/index.ts';
import { apiGatewayEvent, presignOnlyS3Client } from '../../harness/api-gateway.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { startTestControlStore } from '../../harness/control-store.ts';
import { ALL_PORTS_FREE, apiCaller } from '../../harness/local-runtime.ts';
import { secretsManagerClient, startSecretsManager } from '../../harness/secrets-manager.ts';

/** A key of the right shape that no store holds. */
const WRONG_KEY = `mbk_${'A'.repeat(43)}`;
/** The deployed example's config, as the API function loads it in AWS. */
const EXAMPLE_CONFIG = 'infra/example/mailbridge.yaml';
const CONSOLE_METHODS = ['debug', 'info', 'warn', 'error', 'log'] as const;

/**
 * Every line the parts print while `run` runs, at INFO and above. Powertools in dev mode prints
 * through the global console, which is what is captured.
 */
async function printedLines(run: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const saved = { level: process.env.POWERTOOLS_LOG_LEVEL, dev: process.env.POWERTOOLS_DEV };
  process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
  process.env.POWERTOOLS_DEV = 'true';
  const mocks = CONSOLE_METHODS.map((name) =>
    mock.method(console, name, (...args: unknown[]) => {
      lines.push(args.map(String).join(' '));
    }),
  );
  try {
    await run();
  } finally {
    for (const mocked of mocks) mocked.mock.restore();
    for (const [name, value] of [
      ['POWERTOOLS_LOG_LEVEL', saved.level],
      ['POWERTOOLS_DEV', saved.dev],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  return lines;
}

/** No line holds a bearer key (RFC 6750) sent or created; the requests' own lines are there, so the check has something to look at. */
function assertNoKey(lines: string[]): void {
  const requests = lines.filter((line) => line.includes('api request'));
  assert.ok(requests.length >= 3, `the requests were logged:\n${lines.join('\n')}`);
  assert.deepEqual(
    lines.filter((line) => line.includes('mbk_')),
    [],
  );
}

describe('no API key is ever logged', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-key-logging-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('by the local runtime: a 401 with a wrong key, a GET with the dev key, a key created by POST /v1/keys', async () => {
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'inbox',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: 'whsec_aW5ib3g=' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
    });
    const lines = await printedLines(async () => {
      const runtime = await startLocalRuntime({ configFile, dataDir: dir, ports: ALL_PORTS_FREE });
      try {
        const call = apiCaller(() => runtime);
        assert.equal((await call('GET', '/v1/messages', undefined, WRONG_KEY)).status, 401);
        assert.equal((await call('GET', '/v1/messages')).status, 200);
        const created = await call('POST', '/v1/keys', { name: 'ci', scope: 'read' });
        assert.equal(created.status, 201);
        assert.match(created.body.secret, /^mbk_/);
      } finally {
        await runtime.close();
      }
    });
    assertNoKey(lines);
  });

  it('by the Lambda API function: the same three requests through API Gateway events', async () => {
    const control = await startTestControlStore();
    const secrets = await startSecretsManager();
    const secretsClient = secretsManagerClient(secrets.url);
    const made = newApiKey('ops', 'full', new Date());
    await control.store.createKey(made.stored);
    try {
      const lines = await printedLines(async () => {
        const handle = createApiFunctionHandler({
          store: control.store,
          s3: presignOnlyS3Client(),
          secretsManager: secretsClient,
          config: parseConfigText(readFileSync(EXAMPLE_CONFIG, 'utf8'), {
            source: 'mailbridge.yaml',
            runtime: 'aws',
          }),
          runtime: 'aws',
          retry: { retry: async () => [] },
          resolver: async () => [],
        });
        const call = (method: string, path: string, key: string, body?: unknown) =>
          handle(apiGatewayEvent(method, path, { authorization: `Bearer ${key}` }, body));
        assert.equal((await call('GET', '/v1/messages', WRONG_KEY)).statusCode, 401);
        assert.equal((await call('GET', '/v1/messages', made.secret)).statusCode, 200);
        const created = await call('POST', '/v1/keys', made.secret, { name: 'ci', scope: 'read' });
        assert.equal(created.statusCode, 201);
        assert.match(String(created.body), /"secret":"mbk_/);
      });
      assertNoKey(lines);
    } finally {
      secretsClient.destroy();
      await secrets.close();
      await control.close();
    }
  });
});
