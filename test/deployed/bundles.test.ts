import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { SQSBatchResponse } from 'aws-lambda';
import { newApiKey } from '../../core/control/index.ts';
import { type InboundEvent, newMessageId, rawObjectKey } from '../../core/index.ts';
import { sqsEventFromMessages } from '../../dev/sqs-event.ts';
import { apiGatewayEvent } from '../../harness/api-gateway.ts';
import { receivedEvent, startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { tempDir } from '../infra/helpers.ts';
import {
  type AwsEndpoint,
  emulatorRefs,
  putDeployedConfig,
  resolveEnvironment,
  type SynthesizedApp,
  startAwsEndpoint,
  synthesizeApp,
} from './helpers.ts';

const run = promisify(execFile);

// What the Lambda runtime does with a bundle: import it once, then call `handler(event, context)`
// for each event in turn, as a warm container does.
const RUNTIME = `
import { readFileSync } from 'node:fs';
const [bundle, eventsFile, timeoutMs] = process.argv.slice(2);
const { handler } = await import(bundle);
const results = [];
for (const event of JSON.parse(readFileSync(eventsFile, 'utf8'))) {
  const deadline = Date.now() + Number(timeoutMs);
  const context = { functionName: 'deployed', awsRequestId: 'test', getRemainingTimeInMillis: () => deadline - Date.now() };
  results.push(await handler(event, context));
}
process.stdout.write(JSON.stringify(results));
`;

const MESSAGE = [
  'From: Ada <ada@sender.example>',
  'To: support@example.com',
  'Subject: The bundle, as deployed',
  'Message-ID: <deployed-bundle@sender.example>',
  'Date: Fri, 04 Dec 2026 10:00:00 +0000',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello from a multipart message.',
  '--b1',
  'Content-Type: application/octet-stream',
  'Content-Disposition: attachment; filename="notes.bin"',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from('attachment bytes').toString('base64'),
  '--b1--',
  '',
].join('\r\n');

describe('the function bundles, as Lambda loads them', () => {
  let app: SynthesizedApp;
  let emulator: TestEmulator;
  let aws: AwsEndpoint;
  let control: TestControlStore;
  let receiver: WebhookReceiver;
  let dir: string;
  let cleanupDir: () => void;
  const signingSecret = 'q7XgP2mZr9TbW4kLs8NcV1dYe6HfJ3uA';

  before(async () => {
    app = synthesizeApp();
    emulator = await startTestEmulator();
    control = await startTestControlStore();
    aws = await startAwsEndpoint(emulator.emulator.endpoint, { dynamoEndpoint: control.dynamo.endpoint });
    receiver = await startWebhookReceiver({ secret: `whsec_${signingSecret}` });
    ({ dir, cleanup: cleanupDir } = tempDir('mailbridge-deployed-'));
    aws.secretsManager.set('mailbridge/signing/support', signingSecret);
    // The deployed document, its endpoints pointed at the local receiver.
    await putDeployedConfig(
      emulator,
      app.configJson.replaceAll('https://app.example.com/webhooks/mail', receiver.url),
    );
  });
  after(async () => {
    await receiver.close();
    await aws.close();
    await control.close();
    await emulator.close();
    app.cleanup();
    cleanupDir();
  });

  /**
   * Copies the function's asset directory alone to an empty folder (no node_modules anywhere above
   * it), and runs events through its handler in one fresh Node process with exactly the template's
   * environment (NODE_OPTIONS included), plus what points the SDK at the local stand-ins.
   */
  async function runBundle(
    construct: NodejsFunction,
    events: unknown[],
    overrides: Record<string, string> = {},
  ): Promise<unknown[]> {
    const properties =
      app.resources[app.stack.getLogicalId(construct.node.defaultChild as never)]!.Properties;
    const asset = join(
      app.outdir,
      `asset.${(properties.Code as { S3Key: string }).S3Key.replace(/\.zip$/, '')}`,
    );
    const code = join(dir, construct.node.id);
    cpSync(asset, code, { recursive: true });
    const template = (properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const environment = resolveEnvironment(template, emulatorRefs(app, emulator));
    const eventsFile = join(dir, `${construct.node.id}-events.json`);
    writeFileSync(eventsFile, JSON.stringify(events));
    const runtime = join(dir, 'runtime.mjs');
    writeFileSync(runtime, RUNTIME);
    const { stdout } = await run(
      process.execPath,
      [runtime, join(code, 'index.mjs'), eventsFile, String((properties.Timeout as number) * 1000)],
      {
        cwd: code,
        env: {
          ...environment,
          AWS_ENDPOINT_URL: aws.url,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'deployed',
          AWS_SECRET_ACCESS_KEY: 'deployed',
          POWERTOOLS_METRICS_DISABLED: 'true',
          POWERTOOLS_LOG_LEVEL: 'SILENT',
          ...overrides,
        },
      },
    );
    return JSON.parse(stdout) as unknown[];
  }

  /** One SQS event with what is on `queueUrl`, through the bundle of `fn`. */
  async function invoke(fn: 'parse' | 'deliver', queueUrl: string): Promise<SQSBatchResponse> {
    const { Messages = [] } = await emulator.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        AttributeNames: ['All'],
      }),
    );
    assert.ok(Messages.length > 0, `a message on ${queueUrl}`);
    const { Attributes } = await emulator.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
    );
    const [response] = await runBundle(
      app.stack.functions[fn],
      [sqsEventFromMessages(Messages, Attributes!.QueueArn!)],
      // The aws runtime refuses a loopback endpoint (SSRF guard), and the receiver is on 127.0.0.1.
      { MAILBRIDGE_RUNTIME: 'local' },
    );
    return response as SQSBatchResponse;
  }

  /** Stores `message` as the listener would and queues its inbound event. */
  async function queueInbound(message: string): Promise<void> {
    const id = newMessageId();
    const receivedAt = new Date();
    const key = rawObjectKey(id, receivedAt);
    await emulator.s3.send(
      new PutObjectCommand({ Bucket: emulator.resources.bucket, Key: key, Body: message }),
    );
    const event: InboundEvent = {
      version: 1,
      id,
      receivedAt: receivedAt.toISOString(),
      raw: {
        bucket: emulator.resources.bucket,
        key,
        size: Buffer.byteLength(message),
        sha256: createHash('sha256').update(message).digest('hex'),
      },
      envelope: {
        mailFrom: 'ada@sender.example',
        rcptTo: ['support@example.com'],
        helo: 'mail.sender.example',
        remoteAddress: '203.0.113.7',
        remotePort: 40000,
        localPort: 2525,
        tls: null,
        authUser: null,
      },
    };
    await emulator.sqs.send(
      new SendMessageCommand({
        QueueUrl: emulator.resources.inboundQueueUrl,
        MessageBody: JSON.stringify(event),
      }),
    );
  }

  it('parse reads its config from the bucket, parses a multipart message and queues its job', async () => {
    await queueInbound(MESSAGE);
    assert.deepEqual(await invoke('parse', emulator.resources.inboundQueueUrl), { batchItemFailures: [] });
  });

  it('deliver signs the stored payload and POSTs it to the endpoint', async () => {
    assert.deepEqual(await invoke('deliver', emulator.resources.deliveryQueueUrl), { batchItemFailures: [] });
    await receiver.waitForUnique(1, 10_000);
    const [webhook] = receiver.received;
    const payload = webhook!.payload as { route: { id: string }; message: Record<string, unknown> };
    assert.equal(payload.route.id, 'support');
    assert.equal(payload.message.subject, 'The bundle, as deployed');
    assert.match(String(payload.message.text), /Hello from a multipart message\./);
    assert.deepEqual(
      (payload.message.attachments as { filename: string; size: number }[]).map(({ filename, size }) => [
        filename,
        size,
      ]),
      [['notes.bin', 16]],
    );
  });

  it('parse decodes GBK and Shift_JIS mail with the charset tables shipped beside its bundle', async () => {
    // The tables are not in index.mjs: iconv-lite requires them from the zip's tables/ folder.
    const before = new Set(receiver.received.map((webhook) => webhook.webhookId)).size;
    await queueInbound(
      [
        'From: Ada <ada@sender.example>',
        'To: support@example.com',
        // "日本語の件名" in Shift_JIS (RFC 2047 encoded-word)
        'Subject: =?Shift_JIS?B?k/qWe4zqgsyMj5a8?=',
        'Message-ID: <deployed-charsets@sender.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=gb2312',
        'Content-Transfer-Encoding: base64',
        '',
        // "你好，世界" in GBK
        'xOO6w6OsysC95w==',
        '',
      ].join('\r\n'),
    );
    assert.deepEqual(await invoke('parse', emulator.resources.inboundQueueUrl), { batchItemFailures: [] });
    assert.deepEqual(await invoke('deliver', emulator.resources.deliveryQueueUrl), { batchItemFailures: [] });
    await receiver.waitForUnique(before + 1, 10_000);
    const messages = receiver.received.map(
      (webhook) => (webhook.payload as { message: Record<string, unknown> }).message,
    );
    const decoded = messages.find((message) => message.messageId === '<deployed-charsets@sender.example>');
    assert.deepEqual([decoded?.subject, String(decoded?.text).trim()], ['日本語の件名', '你好，世界']);
  });

  it('parse reads a .msg attachment with the unpack worker shipped beside its bundle', async () => {
    // The worker runs from a file (a worker thread), so the zip must hold it next to index.mjs.
    const before = new Set(receiver.received.map((webhook) => webhook.webhookId)).size;
    await queueInbound(
      readFileSync(
        join(
          import.meta.dirname,
          '..',
          '..',
          'harness',
          'fixtures',
          'reply-by-email',
          'outlook-msg-attachment.eml',
        ),
        'ascii',
      ),
    );
    assert.deepEqual(await invoke('parse', emulator.resources.inboundQueueUrl), { batchItemFailures: [] });
    assert.deepEqual(await invoke('deliver', emulator.resources.deliveryQueueUrl), { batchItemFailures: [] });
    await receiver.waitForUnique(before + 1, 10_000);
    const payload = receiver.received.at(-1)!.payload as {
      warnings: string[];
      message: { attachments: { filename: string; unpacked?: { format: string; subject: string } }[] };
    };
    const msg = payload.message.attachments.find((file) => file.filename.endsWith('.msg'));
    assert.deepEqual(
      [msg?.unpacked?.format, msg?.unpacked?.subject],
      ['msg', 'Quote request: 40 office chairs'],
      payload.warnings.join('; '),
    );
  });

  it('the API answers API Gateway HTTP API events from the table, the config and Secrets Manager, as deployed', async () => {
    // The deployed config as written (https endpoints): the API runs with the aws runtime, unchanged.
    await putDeployedConfig(emulator, app.configJson);
    const made = newApiKey('first', 'full', new Date());
    await control.store.createKey(made.stored);
    const messageId = newMessageId();
    const raw = { bucket: emulator.resources.bucket, key: rawObjectKey(messageId, new Date()) };
    await emulator.s3.send(new PutObjectCommand({ Bucket: raw.bucket, Key: raw.key, Body: MESSAGE }));
    await control.store.appendEvents(messageId, [receivedEvent()], raw);
    const request = (method: string, path: string, body?: unknown, key = made.secret) =>
      apiGatewayEvent(method, path, { authorization: `Bearer ${key}` }, body);
    const results = (await runBundle(app.stack.controlPlane.function, [
      request('GET', '/v1/routes'),
      request('POST', '/v1/routes', {
        id: 'tenant-a',
        match: ['*@tenant-a.example'],
        endpoints: ['https://tenant-a.example/hooks/mail'],
      }),
      request('GET', '/v1/routes/tenant-a'),
      request('GET', '/v1/routes', undefined, 'mbk_not-a-key'),
      request('POST', `/v1/messages/${messageId}/retry`, {}),
    ])) as { statusCode: number; body: string }[];
    const [listed, created, shown, unauthorized, retried] = results.map((result) => ({
      status: result.statusCode,
      body: JSON.parse(result.body),
    }));
    assert.equal(listed!.status, 200);
    assert.deepEqual(
      listed!.body.items.map((route: { id: string; source: string }) => [route.id, route.source]),
      [
        ['support', 'config'],
        ['catch-all', 'config'],
      ],
    );
    assert.equal(created!.status, 201);
    const [{ id: secretId }] = created!.body.signingSecrets;
    assert.equal(
      aws.secretsManager.secrets.get(`mailbridge/routes/tenant-a/${secretId}`),
      created!.body.signingSecret,
    );
    assert.deepEqual(
      [shown!.status, shown!.body.source, shown!.body.endpoints],
      [200, 'api', ['https://tenant-a.example/hooks/mail']],
    );
    assert.equal(unauthorized!.status, 401);
    // A retry puts the message back on the inbound queue, rebuilt from its log entry.
    assert.deepEqual([retried!.status, retried!.body], [202, { messageId, jobs: [] }]);
    const { Messages = [] } = await emulator.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: emulator.resources.inboundQueueUrl, WaitTimeSeconds: 1 }),
    );
    const requeued = Messages.map((message) => JSON.parse(message.Body!) as InboundEvent);
    assert.deepEqual(
      requeued.map((event) => [event.id, event.raw.key, event.envelope.rcptTo]),
      [[messageId, raw.key, receivedEvent().event.rcptTo]],
    );
  });
});
