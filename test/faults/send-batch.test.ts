import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import { BatchSendError, sendBatch } from '../../core/index.ts';
import { emulatorClients } from '../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';

describe('faults: sendBatch against SQS answering some entries with Failed', () => {
  let emulator: TestEmulator;
  let proxy: FaultProxy;
  let sqs: ReturnType<typeof emulatorClients>['sqs'];
  let queueUrl: string;

  before(async () => {
    emulator = await startTestEmulator();
    proxy = await startFaultProxy(emulator.emulator.endpoint);
    ({ sqs } = emulatorClients(proxy.endpoint));
    queueUrl = emulator.resources.deliveryQueueUrl;
  });
  after(async () => {
    sqs.destroy();
    await proxy.close();
    await emulator.close();
  });

  async function receiveAll(): Promise<Message[]> {
    const messages: Message[] = [];
    for (;;) {
      const { Messages = [] } = await emulator.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30 }),
      );
      if (Messages.length === 0) return messages;
      messages.push(...Messages);
    }
  }

  const send = (bodies: readonly string[]) =>
    sendBatch(
      bodies,
      (body, Id) => ({ Id, MessageBody: body }),
      (Entries) => sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries })),
      { what: 'test messages', bytes: (body) => Buffer.byteLength(body), retryDelaysMs: [10, 10, 10] },
    );

  it('sends the entries SQS failed on its side again: every message is queued once', async () => {
    const bodies = Array.from({ length: 12 }, (_, i) => `message ${i}`);
    const rule = proxy.add({
      ops: ['SQS.SendMessageBatch'],
      action: { kind: 'failEntries', entries: [2, 7] },
      times: 1,
    });
    await send(bodies);
    rule.remove();
    assert.equal(rule.hits, 1);
    assert.equal(
      proxy.calls.get('SQS.SendMessageBatch'),
      3,
      'two calls of 10 and 2, then one for the two failed',
    );
    const queued = await receiveAll();
    assert.deepEqual(queued.map((message) => message.Body).sort(), [...bodies].sort());
    await emulator.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: queued
          .slice(0, 10)
          .map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle! })),
      }),
    );
    await emulator.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: queued
          .slice(10)
          .map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle! })),
      }),
    );
  });

  it('names the entries SQS refused by the sender’s fault, and queues the others', async () => {
    const rule = proxy.add({
      ops: ['SQS.SendMessageBatch'],
      action: { kind: 'failEntries', entries: [1], senderFault: true, code: 'InvalidParameterValue' },
      times: 1,
    });
    const error = await send(['kept 0', 'refused', 'kept 2']).catch((caught: unknown) => caught);
    rule.remove();
    assert.ok(error instanceof BatchSendError);
    assert.equal(error.unsent.length, 1);
    assert.equal(error.unsent[0]!.index, 1);
    assert.match(error.unsent[0]!.reason, /^InvalidParameterValue: /);
    assert.deepEqual((await receiveAll()).map((message) => message.Body).sort(), ['kept 0', 'kept 2']);
  });

  it('deletes through DeleteMessageBatch the same way', async () => {
    await send(['to delete 0', 'to delete 1']);
    const held = await receiveAll();
    const rule = proxy.add({
      ops: ['SQS.DeleteMessageBatch'],
      action: { kind: 'failEntries', entries: [0] },
      times: 1,
    });
    await sendBatch(
      held,
      (message, Id) => ({ Id, ReceiptHandle: message.ReceiptHandle! }),
      (Entries) => sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries })),
      { what: 'deletes', retryDelaysMs: [10] },
    );
    rule.remove();
    assert.equal(rule.hits, 1);
    assert.equal(proxy.calls.get('SQS.DeleteMessageBatch'), 2);
  });
});
