import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  BatchWriteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { DeliveryJob } from '../../core/index.ts';
import { parseConfig, webhookId } from '../../core/index.ts';
import { createLocalHandlers, emulatorClients, sqsEventFromMessages } from '../../dev/index.ts';
import type { DeadLetterEntry } from '../../functions/index.ts';
import { startTestControlStore, TABLE, type TestControlStore } from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { type PolicyStatement, queueArn, tableArn } from '../../harness/iam-policy.ts';
import { type ParseHarness, startParseHarness } from './parse/harness.ts';

/**
 * The deliver function against S3 as AWS answers it (through the fault proxy's AWS mode): 403 for
 * a missing key, as the role has no s3:ListBucket on payloads/. The emulator alone answers 404.
 */
describe('functions against S3 answering as AWS does', () => {
  let h: ParseHarness;
  let proxy: FaultProxy;
  let clients: ReturnType<typeof emulatorClients>;

  before(async () => {
    h = await startParseHarness();
    proxy = await startFaultProxy(h.emu.emulator.endpoint, {
      aws: { listablePrefixes: ['endpoint-health/'] },
    });
    clients = emulatorClients(proxy.endpoint);
  });

  after(async () => {
    clients.s3.destroy();
    clients.sqs.destroy();
    await proxy.close();
    await h.close();
  });

  it('deliver dead-letters a job whose payload is gone (403 without ListBucket) at once, as not found', async () => {
    const { resources } = h.emu;
    const config = parseConfig(
      {
        domains: ['example.test'],
        routes: [
          {
            id: 'support',
            match: ['*@example.test'],
            endpoints: ['http://127.0.0.1:9/hook'],
            secret: { value: 'whsec_dGVzdA==' },
          },
        ],
        listeners: [{ port: 0, mode: 'mx' }],
        health: { port: 0 },
      },
      { source: 'test', runtime: 'local' },
    );
    const { deliver } = createLocalHandlers({
      s3: clients.s3,
      sqs: clients.sqs,
      resources,
      config,
      secrets: async () => ['whsec_dGVzdA=='],
    });
    const messageId = '01JAWSMODE0000000000000001';
    const payload = { bucket: resources.bucket, key: `payloads/${messageId}/support.json` };
    const job: DeliveryJob = {
      version: 1,
      messageId,
      routeId: 'support',
      endpoint: 'http://127.0.0.1:9/hook',
      recipients: ['help@example.test'],
      payload,
      webhookId: webhookId(messageId, 'support'),
    };
    await h.emu.sqs.send(
      new SendMessageCommand({ QueueUrl: resources.deliveryQueueUrl, MessageBody: JSON.stringify(job) }),
    );
    const { Messages } = await h.emu.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: resources.deliveryQueueUrl,
        AttributeNames: ['All'],
        MaxNumberOfMessages: 10,
      }),
    );
    const { Attributes } = await h.emu.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: resources.deliveryQueueUrl, AttributeNames: ['QueueArn'] }),
    );
    const response = await deliver(sqsEventFromMessages(Messages!, Attributes!.QueueArn!));
    assert.deepEqual(response.batchItemFailures, []);
    const dead = await h.emu.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: resources.deliveryDlqUrl, MaxNumberOfMessages: 10 }),
    );
    const entries = (dead.Messages ?? []).map((message) => JSON.parse(message.Body!) as DeadLetterEntry);
    assert.deepEqual(
      entries.map((entry) => [entry.messageId, entry.reason, entry.attempts, entry.lastError]),
      [[messageId, 'permanent', 0, `payload s3://${payload.bucket}/${payload.key} not found`]],
    );
    assert.ok((proxy.calls.get('S3.GetObject') ?? 0) > 0, 'the read went through the AWS-mode proxy');
  });
});

/** The SDK's own classification of each failed try (`THROTTLING`, `TRANSIENT`, …), retried at once up to 3 tries. */
function recordingRetries(seen: string[]) {
  const token = (count: number) => ({ getRetryCount: () => count, getRetryDelay: () => 0 });
  return {
    acquireInitialRetryToken: async () => token(0),
    refreshRetryTokenForRetry: async (
      previous: { getRetryCount(): number },
      info: { errorType: string; error?: unknown },
    ) => {
      seen.push(info.errorType);
      // As the SDK's standard strategy: a client error is not retried.
      if (info.errorType === 'CLIENT_ERROR' || previous.getRetryCount() >= 2) throw info.error;
      return token(previous.getRetryCount() + 1);
    },
    recordSuccess: () => undefined,
  };
}

/** S3, SQS and DynamoDB clients through a proxy, signing as `key`, their failed tries recorded in `seen`. */
function sdkClients(endpoints: { aws: string; dynamo: string }, key: string, seen: string[] = []) {
  const common = {
    region: 'us-east-1',
    credentials: { accessKeyId: key, secretAccessKey: 'local' },
    retryStrategy: recordingRetries(seen),
  };
  return {
    seen,
    s3: new S3Client({ ...common, endpoint: endpoints.aws, forcePathStyle: true }),
    sqs: new SQSClient({ ...common, endpoint: endpoints.aws }),
    dynamo: new DynamoDBClient({ ...common, endpoint: endpoints.dynamo }),
    destroy() {
      for (const client of [this.s3, this.sqs, this.dynamo]) client.destroy();
    },
  };
}

type Clients = ReturnType<typeof sdkClients>;
type Failure = { name: string; $metadata: { httpStatusCode?: number; attempts?: number } };
const failureOf = async (call: Promise<unknown>) => {
  const error = (await call.then(
    () => assert.fail('the call succeeded'),
    (caught: unknown) => caught,
  )) as Failure;
  return { name: error.name, status: error.$metadata.httpStatusCode, attempts: error.$metadata.attempts };
};

/**
 * The proxy's AWS answers as the SDK reads them: throttling and 5xx bursts as each service sends
 * them (the SDK must classify and retry them as it would AWS's), and IAM refusals as each service
 * words them. The emulator and dynalite behind it never answer any of these.
 */
describe('the fault proxy answering as AWS does, as the SDK reads it', () => {
  let emu: TestEmulator;
  let control: TestControlStore;
  let proxies: { aws: FaultProxy; dynamo: FaultProxy };
  const endpoints = () => ({ aws: proxies.aws.endpoint, dynamo: proxies.dynamo.endpoint });
  const table = tableArn(TABLE);
  const bucket = () => `arn:aws:s3:::${emu.resources.bucket}`;
  const roles = (): Record<string, PolicyStatement[]> =>
    ({
      reader: [
        { Effect: 'Allow', Action: 's3:GetObject*', Resource: `${bucket()}/raw/*` },
        {
          Effect: 'Allow',
          Action: 's3:ListBucket',
          Resource: bucket(),
          Condition: { StringLike: { 's3:prefix': 'endpoint-health/*' } },
        },
        { Effect: 'Allow', Action: ['sqs:SendMessage'], Resource: queueArn(emu.resources.inboundQueueUrl) },
        { Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: table },
        {
          Effect: 'Allow',
          Action: ['dynamodb:Query', 'dynamodb:BatchWriteItem'],
          Resource: table,
          Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['ROUTE*'] } },
        },
      ],
    }) satisfies Record<string, PolicyStatement[]>;

  before(async () => {
    emu = await startTestEmulator();
    control = await startTestControlStore();
    proxies = {
      aws: await startFaultProxy(emu.emulator.endpoint, {
        aws: { conditionalWrites: false, roles: roles() },
      }),
      dynamo: await startFaultProxy(control.dynamo.endpoint, { aws: { roles: roles() } }),
    };
  });

  after(async () => {
    await proxies.aws.close();
    await proxies.dynamo.close();
    await control.close();
    await emu.close();
  });

  it('throttles as each service does, and the SDK retries it as throttling until it succeeds', async () => {
    const { resources } = emu;
    const key = 'raw/throttled.eml';
    await emu.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: 'x' }));
    const cases = [
      [
        'S3.GetObject',
        undefined,
        (c: Clients) => c.s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: key })),
      ],
      [
        'SQS.SendMessage',
        'ThrottlingException',
        (c: Clients) =>
          c.sqs.send(new SendMessageCommand({ QueueUrl: resources.inboundQueueUrl, MessageBody: 'x' })),
      ],
      [
        'SQS.SendMessage',
        'RequestThrottled',
        (c: Clients) =>
          c.sqs.send(new SendMessageCommand({ QueueUrl: resources.inboundQueueUrl, MessageBody: 'x' })),
      ],
      [
        'DynamoDB.GetItem',
        'ThrottlingException',
        (c: Clients) =>
          c.dynamo.send(
            new GetItemCommand({ TableName: TABLE, Key: { pk: { S: 'ROUTE' }, sk: { S: 'x' } } }),
          ),
      ],
      [
        'DynamoDB.GetItem',
        'ProvisionedThroughputExceededException',
        (c: Clients) =>
          c.dynamo.send(
            new GetItemCommand({ TableName: TABLE, Key: { pk: { S: 'ROUTE' }, sk: { S: 'x' } } }),
          ),
      ],
    ] as const;
    for (const [op, code, call] of cases) {
      const proxy = op.startsWith('DynamoDB.') ? proxies.dynamo : proxies.aws;
      const clients = sdkClients(endpoints(), 'reader');
      try {
        const action = { kind: 'throttle', ...(code ? { code } : {}) } as const;
        proxy.add({ ops: [op], action, times: 3 });
        const expected = {
          S3: ['SlowDown', 503],
          SQS: [code, code === 'RequestThrottled' ? 403 : 400],
          DynamoDB: [code, 400],
        }[op.split('.')[0] as 'S3'];
        assert.deepEqual(
          await failureOf(call(clients)),
          { name: expected[0], status: expected[1], attempts: 3 },
          `${op} ${code}`,
        );
        assert.deepEqual(clients.seen, ['THROTTLING', 'THROTTLING', 'THROTTLING'], `${op} ${code}`);
        proxy.clear();
        // Throttled twice, then answered: the SDK's retries carry the call through.
        proxy.add({ ops: [op], action, times: 2 });
        clients.seen.length = 0;
        const output = (await call(clients)) as { $metadata: { attempts?: number } };
        assert.equal(output.$metadata.attempts, 3, `${op} ${code}`);
        assert.deepEqual(clients.seen, ['THROTTLING', 'THROTTLING'], `${op} ${code}`);
      } finally {
        proxy.clear();
        clients.destroy();
      }
    }
  });

  it('fails a burst of N calls with 5xx, then recovers: a burst shorter than the SDK tries is never seen', async () => {
    const { resources } = emu;
    const clients = sdkClients(endpoints(), 'reader');
    const send = () =>
      clients.sqs.send(new SendMessageCommand({ QueueUrl: resources.inboundQueueUrl, MessageBody: 'burst' }));
    try {
      const burst = proxies.aws.add({
        ops: ['SQS.SendMessage'],
        action: { kind: 'fail', status: 503 },
        times: 4,
      });
      assert.deepEqual(await failureOf(send()), { name: 'ServiceUnavailable', status: 503, attempts: 3 });
      assert.equal((await send()).$metadata.attempts, 2, 'the fourth failure, then the burst is over');
      assert.equal((await send()).$metadata.attempts, 1);
      assert.equal(burst.hits, 4);
      assert.deepEqual(clients.seen, ['TRANSIENT', 'TRANSIENT', 'TRANSIENT', 'TRANSIENT']);
    } finally {
      proxies.aws.clear();
      clients.destroy();
    }
  });

  it('refuses what the role does not grant as each service does, and lets through what it does', async () => {
    const { resources } = emu;
    await emu.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: 'raw/granted.eml', Body: 'x' }));
    await emu.s3.send(
      new PutObjectCommand({ Bucket: resources.bucket, Key: 'payloads/other.json', Body: 'x' }),
    );
    const reader = sdkClients(endpoints(), 'reader');
    const stranger = sdkClients(endpoints(), 'stranger');
    const item = { TableName: TABLE, Key: { pk: { S: 'ROUTE' }, sk: { S: 'x' } } };
    try {
      // Granted: the object under raw/, the inbound queue, the table, a list of endpoint-health/.
      await reader.s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: 'raw/granted.eml' }));
      await reader.sqs.send(
        new SendMessageCommand({ QueueUrl: resources.inboundQueueUrl, MessageBody: 'x' }),
      );
      await reader.dynamo.send(new GetItemCommand(item));
      await reader.s3.send(
        new ListObjectsV2Command({ Bucket: resources.bucket, Prefix: 'endpoint-health/x' }),
      );
      // Within the partitions its condition names: a Query of one, a batch of items all in them.
      const query = (pk: string) =>
        new QueryCommand({
          TableName: TABLE,
          KeyConditionExpression: '#pk = :pk',
          ExpressionAttributeNames: { '#pk': 'pk' },
          ExpressionAttributeValues: { ':pk': { S: pk } },
        });
      const batch = (...pks: string[]) =>
        new BatchWriteItemCommand({
          RequestItems: {
            [TABLE]: pks.map((pk, i) => ({ PutRequest: { Item: { pk: { S: pk }, sk: { S: `x${i}` } } } })),
          },
        });
      await reader.dynamo.send(query('ROUTE'));
      await reader.dynamo.send(batch('ROUTE', 'ROUTE#2'));
      // Not granted: another prefix, another action, another queue, a list outside the condition.
      const denied = [
        [
          () =>
            reader.s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: 'payloads/other.json' })),
          'AccessDenied',
          403,
        ],
        [
          () =>
            reader.s3.send(new HeadObjectCommand({ Bucket: resources.bucket, Key: 'payloads/other.json' })),
          // S3 answers a HEAD with no body: the SDK has only the status.
          'Unknown',
          403,
        ],
        [
          () =>
            reader.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: 'raw/new.eml', Body: 'x' })),
          'AccessDenied',
          403,
        ],
        [
          () => reader.s3.send(new ListObjectsV2Command({ Bucket: resources.bucket, Prefix: 'raw/' })),
          'AccessDenied',
          403,
        ],
        [
          () =>
            reader.sqs.send(
              new SendMessageCommand({ QueueUrl: resources.deliveryQueueUrl, MessageBody: 'x' }),
            ),
          'AccessDenied',
          403,
        ],
        [
          () => reader.sqs.send(new ReceiveMessageCommand({ QueueUrl: resources.inboundQueueUrl })),
          'AccessDenied',
          403,
        ],
        [
          () => reader.dynamo.send(new PutItemCommand({ TableName: TABLE, Item: item.Key })),
          'AccessDeniedException',
          400,
        ],
        [() => stranger.dynamo.send(new GetItemCommand(item)), 'AccessDeniedException', 400],
        [() => reader.dynamo.send(query('M#1')), 'AccessDeniedException', 400],
        [() => reader.dynamo.send(batch('ROUTE', 'M#1')), 'AccessDeniedException', 400],
        [
          () => stranger.s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: 'raw/granted.eml' })),
          'AccessDenied',
          403,
        ],
      ] as const;
      for (const [call, name, status] of denied) {
        assert.deepEqual(await failureOf(call()), { name, status, attempts: 1 });
      }
      assert.deepEqual(
        [...proxies.aws.denials, ...proxies.dynamo.denials].map(({ role, action, resource }) => [
          role,
          action,
          resource,
        ]),
        [
          ['reader', 's3:GetObject', `${bucket()}/payloads/other.json`],
          ['reader', 's3:GetObject', `${bucket()}/payloads/other.json`],
          ['reader', 's3:PutObject', `${bucket()}/raw/new.eml`],
          ['reader', 's3:ListBucket', bucket()],
          ['reader', 'sqs:SendMessage', queueArn(resources.deliveryQueueUrl)],
          ['reader', 'sqs:ReceiveMessage', queueArn(resources.inboundQueueUrl)],
          ['stranger', 's3:GetObject', `${bucket()}/raw/granted.eml`],
          ['reader', 'dynamodb:PutItem', table],
          ['stranger', 'dynamodb:GetItem', table],
          ['reader', 'dynamodb:Query', table],
          ['reader', 'dynamodb:BatchWriteItem', table],
        ],
      );
      // The SQS refusal carries IAM's wording, as the SDK surfaces it.
      const refusal = (await reader.sqs
        .send(new SendMessageCommand({ QueueUrl: resources.deliveryQueueUrl, MessageBody: 'x' }))
        .catch((error: Error) => error)) as Error;
      assert.match(
        refusal.message,
        /is not authorized to perform: sqs:SendMessage on resource: arn:aws:sqs:/,
      );
    } finally {
      reader.destroy();
      stranger.destroy();
    }
  });

  it('answers a missing key 404 only to a role that may list the bucket, as S3 does', async () => {
    const { resources } = emu;
    const lister = [
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:ListBucket'], Resource: [bucket(), `${bucket()}/*`] },
    ] satisfies PolicyStatement[];
    const proxy = await startFaultProxy(emu.emulator.endpoint, { aws: { roles: { ...roles(), lister } } });
    const clients = {
      reader: sdkClients({ aws: proxy.endpoint, dynamo: '' }, 'reader'),
      lister: sdkClients({ aws: proxy.endpoint, dynamo: '' }, 'lister'),
    };
    try {
      const get = (who: 'reader' | 'lister') =>
        failureOf(
          clients[who].s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: 'raw/missing.eml' })),
        );
      assert.deepEqual(await get('reader'), { name: 'AccessDenied', status: 403, attempts: 1 });
      assert.deepEqual(await get('lister'), { name: 'NoSuchKey', status: 404, attempts: 1 });
    } finally {
      clients.reader.destroy();
      clients.lister.destroy();
      await proxy.close();
    }
  });
});
