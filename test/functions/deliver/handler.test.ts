import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { Webhook } from 'standardwebhooks';
import { newMessageId } from '../../../core/index.ts';
import { lambdaContext, sqsEventFromMessages } from '../../../dev/index.ts';
import { writeConfigFile } from '../../../harness/config-file.ts';
import { startTestControlStore, TABLE, type TestControlStore } from '../../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../../harness/emulator.ts';
import { webhookPayload } from '../../../harness/webhook-payload.ts';

const SECRET = `whsec_${Buffer.from('the Lambda entry point signing key').toString('base64')}`;

describe('deliver Lambda entry point', () => {
  let emulator: TestEmulator;
  let control: TestControlStore;
  let dir: string;
  const received: { headers: IncomingHttpHeaders; body: string }[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });

  before(async () => {
    emulator = await startTestEmulator();
    control = await startTestControlStore();
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-deliver-'));
  });
  after(async () => {
    receiver.close();
    await emulator.close();
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads its config and secrets from the environment and delivers', async () => {
    const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        { id: 'support', match: ['*@example.test'], endpoints: [endpoint], secret: { env: 'HOOK_SECRET' } },
      ],
      listeners: [{ port: 0, mode: 'mx' }],
      health: { port: 0 },
    });
    Object.assign(process.env, emulator.env, {
      MAILBRIDGE_CONFIG: configFile,
      HOOK_SECRET: SECRET,
      MAILBRIDGE_CONTROL_TABLE: TABLE,
      MAILBRIDGE_CONTROL_RETENTION_DAYS: '30',
      AWS_ENDPOINT_URL_DYNAMODB: control.dynamo.endpoint,
    });
    const { handler } = await import('../../../functions/deliver/handler.ts');

    const { bucket, deliveryQueueUrl } = emulator.resources;
    const messageId = newMessageId();
    const payload = webhookPayload(messageId);
    await emulator.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'payloads/1.json', Body: JSON.stringify(payload) }),
    );
    const job = {
      version: 1,
      messageId,
      routeId: 'support',
      endpoint,
      recipients: ['help@example.test'],
      payload: { bucket, key: 'payloads/1.json' },
      webhookId: 'msg_handlertest',
    };
    await emulator.sqs.send(
      new SendMessageCommand({ QueueUrl: deliveryQueueUrl, MessageBody: JSON.stringify(job) }),
    );
    const { Messages } = await emulator.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: deliveryQueueUrl,
        AttributeNames: ['All'],
        MaxNumberOfMessages: 10,
      }),
    );
    const { Attributes } = await emulator.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: deliveryQueueUrl, AttributeNames: ['QueueArn'] }),
    );
    const context: Context = lambdaContext('mailbridge-deliver', 'us-east-1', 60_000);
    const response = await handler(sqsEventFromMessages(Messages!, Attributes!.QueueArn!), context);

    assert.deepEqual(response.batchItemFailures, []);
    assert.equal(received.length, 1);
    assert.deepEqual(
      new Webhook(SECRET).verify(received[0]!.body, received[0]!.headers as Record<string, string>),
      payload,
    );
    // The try and its outcome are in the message log before the invocation returns.
    const logged = await control.store.getMessage(job.messageId);
    assert.deepEqual(
      logged?.timeline.map((event) => event.type),
      ['attempt', 'delivered'],
    );
  });
});
