import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { DeliveryJobSchema, newMessageId, rawObjectKey, webhookId } from '../../core/index.ts';
import { emulatorClients, type LocalResources, provisionLocalResources } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { startTestControlStore, TABLE, type TestControlStore } from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { jsonLines, runCli, startCli } from './helpers.ts';

const STACK = 'Mailbridge';
// Names as CloudFormation makes them for the stack's resources: nothing like the local ones.
const NAMES = {
  bucket: 'mailbridge-storagebucket19db2ff8-1x2y3z4w5v6u',
  inbound: 'Mailbridge-QueuesInbound1D7F2A3B-AbCdEfGh',
  delivery: 'Mailbridge-QueuesDelivery9E2B4C5D-IjKlMnOp',
};

/**
 * CloudFormation's query API (DescribeStacks, version 2010-05-15) on 127.0.0.1, answering as AWS
 * does: the stack's outputs, or a 400 ValidationError for a stack that does not exist. CloudFormation
 * itself cannot run here.
 */
async function startCloudFormation(
  outputs: Record<string, string>,
): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const form = new URLSearchParams(body);
      const requestId = randomUUID();
      const signed = /^AWS4-HMAC-SHA256 Credential=\S+\/cloudformation\/aws4_request/.test(
        request.headers.authorization ?? '',
      );
      if (request.method !== 'POST' || !signed || form.get('Version') !== '2010-05-15') {
        response.writeHead(403).end();
        return;
      }
      if (form.get('Action') !== 'DescribeStacks' || form.get('StackName') !== STACK) {
        response
          .writeHead(400, { 'content-type': 'text/xml' })
          .end(
            `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>` +
              `<Code>ValidationError</Code><Message>Stack with id ${form.get('StackName')} does not exist</Message>` +
              `</Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
          );
        return;
      }
      const members = Object.entries(outputs)
        .map(
          ([key, value]) =>
            `<member><OutputKey>${key}</OutputKey><OutputValue>${value}</OutputValue></member>`,
        )
        .join('');
      response
        .writeHead(200, { 'content-type': 'text/xml' })
        .end(
          `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult>` +
            `<Stacks><member><StackName>${STACK}</StackName>` +
            `<StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/${STACK}/${randomUUID()}</StackId>` +
            `<CreationTime>2026-11-30T10:00:00.000Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus>` +
            `<Outputs>${members}</Outputs></member></Stacks></DescribeStacksResult>` +
            `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></DescribeStacksResponse>`,
        );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('mailbridge --aws, against the emulator with the stack resource names', () => {
  let emulator: TestEmulator;
  let stack: LocalResources;
  let cloudFormation: { url: string; server: Server };
  let dir: string;
  let env: Record<string, string>;
  let control: TestControlStore;

  before(async () => {
    emulator = await startTestEmulator();
    control = await startTestControlStore();
    stack = await provisionLocalResources(emulatorClients(emulator.emulator.endpoint), NAMES);
    const name = (url: string) => url.slice(url.lastIndexOf('/') + 1);
    cloudFormation = await startCloudFormation({
      BucketName: stack.bucket,
      InboundQueueName: name(stack.inboundQueueUrl),
      InboundDlqName: name(stack.inboundDlqUrl),
      DeliveryQueueName: name(stack.deliveryQueueUrl),
      DeliveryDlqName: name(stack.deliveryDlqUrl),
      LoadBalancerDnsName: 'Mailbridge-Listener-0123456789.elb.us-east-1.amazonaws.com',
      ControlTableName: TABLE,
    });
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-aws-cli-'));
    env = {
      // What the SDK reads in AWS, pointed at the emulator (S3, SQS) and at the CloudFormation above.
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_ENDPOINT_URL: emulator.emulator.endpoint,
      AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormation.url,
      AWS_ENDPOINT_URL_DYNAMODB: control.dynamo.endpoint,
      // No local runtime to find.
      MAILBRIDGE_DATA_DIR: join(dir, 'no-runtime'),
    };
  });

  after(async () => {
    cloudFormation?.server.close();
    await emulator?.close();
    await control?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A dead-lettered job as deliver writes it, on the stack's delivery DLQ. */
  async function deadLetter(routeId: string): Promise<string> {
    const messageId = newMessageId();
    const job = {
      ...DeliveryJobSchema.parse({
        version: 1,
        messageId,
        routeId,
        endpoint: 'https://hooks.app.test/mail',
        recipients: ['support@example.test'],
        payload: { bucket: stack.bucket, key: `payloads/${messageId}/${routeId}.json` },
        webhookId: webhookId(messageId, routeId),
        lastStatus: 503,
        lastError: 'HTTP 503: unavailable',
      }),
      reason: 'exhausted',
      attempts: 8,
    };
    await emulator.sqs.send(
      new SendMessageCommand({ QueueUrl: stack.deliveryDlqUrl, MessageBody: JSON.stringify(job) }),
    );
    return messageId;
  }

  it('without --stack or names, says what it needs (exit 2); --stack of no such stack fails (exit 1)', async () => {
    const [unnamed, local, missing] = await Promise.all([
      runCli(['dlq', 'list', '--aws'], { env }),
      runCli(['dlq', 'list', '--stack', STACK], { env }),
      runCli(['dlq', 'list', '--aws', '--stack', 'Nope'], { env }),
    ]);
    assert.equal(unnamed.code, 2);
    assert.match(unnamed.stderr, /--aws needs --stack, or --delivery-dlq \(or MAILBRIDGE_DELIVERY_DLQ_URL\)/);
    assert.equal(local.code, 2);
    assert.match(local.stderr, /--stack names a deployed stack: add --aws/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read the outputs of stack Nope: Stack with id Nope does not exist/);
  });

  it('dlq list and show read the stack queues named by --stack, or by flags', async () => {
    const messageId = await deadLetter('support');
    const byStack = await runCli(
      ['dlq', 'list', '--aws', '--stack', STACK, '--queue', 'delivery', '--json'],
      {
        env,
      },
    );
    assert.equal(byStack.code, 0, byStack.stderr);
    const items = JSON.parse(byStack.stdout) as { messageId: string; reason: string; attempts: number }[];
    assert.deepEqual(
      items
        .filter((item) => item.messageId === messageId)
        .map(({ reason, attempts }) => ({ reason, attempts })),
      [{ reason: 'exhausted', attempts: 8 }],
    );
    const byFlags = await runCli(
      ['dlq', 'show', messageId, '--aws', '--queue', 'delivery', '--delivery-dlq', `${NAMES.delivery}-dlq`],
      { env },
    );
    assert.equal(byFlags.code, 0, byFlags.stderr);
    assert.match(byFlags.stdout, /reason\s+exhausted/);
    assert.match(byFlags.stdout, /last status\s+503/);
  });

  it('dlq redrive sends entries back to the stack delivery queue, and logs it in the stack control table', async () => {
    const messageId = await deadLetter('billing');
    const redriven = await runCli(['dlq', 'redrive', '--aws', '--stack', STACK, '--message-id', messageId], {
      env,
    });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.match(redriven.stdout, /redrove 1 entry/);
    const { Messages = [] } = await emulator.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: stack.deliveryQueueUrl, MaxNumberOfMessages: 10 }),
    );
    const back = Messages.map((message) => JSON.parse(message.Body!) as Record<string, unknown>);
    const job = back.find((entry) => entry.messageId === messageId);
    assert.ok(job, JSON.stringify(back));
    assert.equal(job.reason, undefined, 'a fresh job, without the dead-letter fields');
    const logged = await control.store.getMessage(messageId);
    assert.deepEqual(
      logged?.timeline.map(({ at: _at, ...event }) => event),
      [
        {
          type: 'retried',
          by: 'cli',
          route: 'billing',
          jobs: [{ route: 'billing', endpoint: job.endpoint, webhookId: webhookId(messageId, 'billing') }],
        },
      ],
    );
  });

  it('tail follows the stack delivery DLQ', async () => {
    const tail = await startCli(
      ['tail', '--aws', '--stack', STACK, '--json', '--count', '1', '--timeout', '30'],
      'following the delivery DLQ',
      { env },
    );
    const messageId = await deadLetter('sales');
    const result = await tail.done;
    assert.equal(result.code, 0, result.stderr);
    const event = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.deepEqual(
      {
        kind: event.kind,
        messageId: event.messageId,
        reason: event.reason,
        status: event.status,
        tries: event.tries,
      },
      { kind: 'failed', messageId, reason: 'exhausted', status: 503, tries: 8 },
    );
  });

  it('dlq list and tail show a malformed delivery DLQ entry as malformed, naming what is wrong', async () => {
    const tail = await startCli(
      ['tail', '--aws', '--stack', STACK, '--json', '--count', '2', '--timeout', '30'],
      'following the delivery DLQ',
      { env },
    );
    const messageId = newMessageId();
    const bodies = [
      'not json {',
      JSON.stringify({
        version: 1,
        messageId,
        routeId: 'support',
        endpoint: 'https://hooks.app.test/mail',
        recipients: ['support@example.test'],
        payload: { bucket: stack.bucket, key: `payloads/${messageId}/support.json` },
        webhookId: webhookId(messageId, 'support'),
        reason: 'lost-in-space',
        attempts: 3,
      }),
    ];
    const sqsIds: string[] = [];
    for (const body of bodies) {
      const sent = await emulator.sqs.send(
        new SendMessageCommand({ QueueUrl: stack.deliveryDlqUrl, MessageBody: body }),
      );
      sqsIds.push(sent.MessageId!);
    }
    const expected = [
      { sqsMessageId: sqsIds[0], lastError: 'body is not JSON' },
      { sqsMessageId: sqsIds[1], lastError: /^not a delivery DLQ entry: reason: Invalid option/ },
    ];

    const listed = await runCli(['dlq', 'list', '--aws', '--stack', STACK, '--queue', 'delivery', '--json'], {
      env,
    });
    assert.equal(listed.code, 0, listed.stderr);
    const items = (JSON.parse(listed.stdout) as Record<string, unknown>[]).filter((item) =>
      sqsIds.includes(String(item.sqsMessageId)),
    );
    assert.equal(items.length, 2);
    for (const { sqsMessageId, lastError } of expected) {
      const item = items.find((entry) => entry.sqsMessageId === sqsMessageId)!;
      assert.equal(item.reason, 'malformed');
      assert.equal(item.messageId, null);
      assert.match(
        String(item.lastError),
        lastError instanceof RegExp ? lastError : new RegExp(`^${lastError}$`),
      );
    }

    const tailed = await tail.done;
    assert.equal(tailed.code, 0, tailed.stderr);
    const lines = jsonLines(tailed.stdout);
    assert.deepEqual(
      lines.map((line) => [line.kind, line.reason, line.messageId]).sort(),
      sqsIds.map((id) => ['failed', 'malformed', `sqs:${id}`]).sort(),
    );
  });

  it('routes check reads endpoint health from the stack bucket; replay queues on the stack delivery queue', async () => {
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'support',
          match: ['*@example.test'],
          endpoints: ['https://hooks.app.test/mail'],
          secret: { env: 'X' },
        },
      ],
      listeners: [{ port: 25, mode: 'mx' }],
      health: { port: 8080 },
      tls: { source: 'secrets-manager', secretId: 'mailbridge/tls' },
    });
    const checked = await runCli(
      [
        'routes',
        'check',
        '--aws',
        '--stack',
        STACK,
        '--runtime',
        'aws',
        '--config',
        configFile,
        'a@example.test',
      ],
      { env },
    );
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`^endpoint health \\(bucket ${NAMES.bucket}\\):$`, 'm'));

    const raw = await readFile(
      join(import.meta.dirname, '..', '..', 'harness', 'fixtures', 'mail', '01-plain-ascii.eml'),
    );
    const id = newMessageId();
    const receivedAt = new Date();
    await emulator.s3.send(
      new PutObjectCommand({ Bucket: stack.bucket, Key: rawObjectKey(id, receivedAt), Body: raw }),
    );
    const replayed = await runCli(
      ['replay', id, '--aws', '--stack', STACK, '--config', configFile, '--rcpt', 'a@example.test', '--json'],
      { env },
    );
    assert.equal(replayed.code, 0, replayed.stderr);
    const { jobs } = JSON.parse(replayed.stdout) as { jobs: { routeId: string; webhookId: string }[] };
    assert.deepEqual(
      jobs.map((job) => job.routeId),
      ['support'],
    );
    const { Messages = [] } = await emulator.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: stack.deliveryQueueUrl, MaxNumberOfMessages: 10 }),
    );
    const queued = Messages.map(
      (message) =>
        JSON.parse(message.Body!) as { messageId: string; payload: { inline: { raw: { url: string } } } },
    );
    const job = queued.find((entry) => entry.messageId === id);
    assert.ok(job, 'the job is on the stack delivery queue');
    // The payload rides in the job; its raw link names the stack bucket, to be signed at delivery.
    assert.ok(job.payload.inline.raw.url.startsWith(`s3://${NAMES.bucket}/raw/`));
  });
});
