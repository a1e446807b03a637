import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { DeliveryJob } from '../../core/index.ts';
import { parseConfig, webhookId } from '../../core/index.ts';
import { createLocalHandlers, emulatorClients, sqsEventFromMessages } from '../../dev/index.ts';
import type { DeadLetterEntry } from '../../functions/index.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { sqsEvent } from '../helpers/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './parse/harness.ts';

const MESSAGE =
  'From: Bob <bob@sender.test>\r\nTo: support@example.test\r\nSubject: resent\r\nMessage-ID: <resent@sender.test>\r\n\r\nthe same bytes twice\r\n';

/**
 * The parse and deliver functions against S3 as AWS answers it (through the fault proxy's AWS
 * mode): 403 for a missing key, as the roles have no s3:ListBucket on these prefixes, and 412 for a
 * conditional write whose condition fails. The emulator alone answers 404 and ignores conditions.
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

  it('marks the second copy of a message a duplicate, one of two copies parsed at once', async () => {
    const parse = h.handler({ s3: clients.s3, sqs: clients.sqs });
    const first = await h.store(MESSAGE);
    assert.deepEqual(await parse(sqsEvent([first])), { batchItemFailures: [] });
    const [original] = await h.drainJobs();
    assert.deepEqual((await h.payload(original!)).warnings, []);

    const [a, b] = [await h.store(MESSAGE), await h.store(MESSAGE)];
    assert.deepEqual(await parse(sqsEvent([a, b])), { batchItemFailures: [] });
    const copies = await Promise.all((await h.drainJobs()).map((job) => h.payload(job)));
    assert.deepEqual(
      copies.map((payload) => payload.warnings),
      [
        [`duplicate: same content and envelope as message ${first.id}`],
        [`duplicate: same content and envelope as message ${first.id}`],
      ],
    );

    // Two new copies at the same time: the conditional write lets exactly one be first.
    const message = MESSAGE.replace('resent', 'raced');
    const [c, d] = [await h.store(message), await h.store(message)];
    await Promise.all([parse(sqsEvent([c])), parse(sqsEvent([d]))]);
    const raced = await Promise.all((await h.drainJobs()).map((job) => h.payload(job)));
    assert.deepEqual(raced.map((payload) => payload.warnings.length).sort(), [0, 1]);
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
    const job: DeliveryJob = {
      version: 1,
      messageId,
      routeId: 'support',
      endpoint: 'http://127.0.0.1:9/hook',
      recipients: ['help@example.test'],
      payload: { bucket: resources.bucket, key: `payloads/${messageId}/support.json` },
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
      [[messageId, 'permanent', 0, `payload s3://${resources.bucket}/${job.payload.key} not found`]],
    );
    assert.ok((proxy.calls.get('S3.GetObject') ?? 0) > 0, 'the read went through the AWS-mode proxy');
  });
});
