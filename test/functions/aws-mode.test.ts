import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { DeliveryJob } from '../../core/index.ts';
import { parseConfig, webhookId } from '../../core/index.ts';
import { createLocalHandlers, emulatorClients, sqsEventFromMessages } from '../../dev/index.ts';
import type { DeadLetterEntry } from '../../functions/index.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
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
      attempt: 0,
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
