import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { type Poller, type SqsHandler, startPoller } from '../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';

let emulator: TestEmulator;
let queues = 0;

async function queueArn(queueUrl: string): Promise<string> {
  const { Attributes } = await emulator.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
  );
  return Attributes!.QueueArn!;
}

/** A fresh queue with a 1 s visibility timeout and a DLQ after `maxReceiveCount` receives. */
async function freshQueue(maxReceiveCount = 5): Promise<{ queueUrl: string; dlqUrl: string }> {
  queues++;
  const dlq = await emulator.sqs.send(new CreateQueueCommand({ QueueName: `poller-test-${queues}-dlq` }));
  const queue = await emulator.sqs.send(
    new CreateQueueCommand({
      QueueName: `poller-test-${queues}`,
      Attributes: {
        VisibilityTimeout: '1',
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: await queueArn(dlq.QueueUrl!),
          maxReceiveCount,
        }),
      },
    }),
  );
  return { queueUrl: queue.QueueUrl!, dlqUrl: dlq.QueueUrl! };
}

async function send(queueUrl: string, bodies: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const body of bodies) {
    const sent = await emulator.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
    ids.push(sent.MessageId!);
  }
  return ids;
}

/** Runs a poller until `done` says so, collecting each invocation's event. */
async function pollUntil(
  queueUrl: string,
  handler: (event: SQSEvent, call: number, context: Context) => Promise<SQSBatchResponse | undefined>,
  done: (events: SQSEvent[]) => boolean,
): Promise<{ events: SQSEvent[]; poller: Poller }> {
  const events: SQSEvent[] = [];
  let finished: () => void;
  const allDone = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const wrapped: SqsHandler = async (event, context) => {
    events.push(event);
    try {
      return await handler(event, events.length, context);
    } finally {
      if (done(events)) finished();
    }
  };
  const poller = await startPoller({ sqs: emulator.sqs, queueUrl, handler: wrapped, waitTimeSeconds: 1 });
  await allDone;
  await poller.stop();
  return { events, poller };
}

async function queueDepth(queueUrl: string): Promise<number> {
  const { Attributes } = await emulator.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(Attributes!.ApproximateNumberOfMessages) +
    Number(Attributes!.ApproximateNumberOfMessagesNotVisible)
  );
}

describe('poller (Lambda SQS event source mapping)', () => {
  before(async () => {
    emulator = await startTestEmulator();
  });
  after(async () => {
    await emulator.close();
  });

  it("hands the handler Lambda's SQS event shape and a Lambda context", async () => {
    const { queueUrl } = await freshQueue();
    const body = '{"hello":"wörld"}';
    await emulator.sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: body,
        MessageAttributes: {
          kind: { DataType: 'String', StringValue: 'test' },
          count: { DataType: 'Number', StringValue: '3' },
          blob: { DataType: 'Binary', BinaryValue: Buffer.from([0, 1, 2, 255]) },
        },
      }),
    );
    let seenContext: Context | undefined;
    const { events } = await pollUntil(
      queueUrl,
      async (_event, _call, context) => {
        seenContext = context;
        return undefined;
      },
      (events) => events.length === 1,
    );
    const record = events[0]!.Records[0]!;
    assert.deepEqual(Object.keys(record).sort(), [
      'attributes',
      'awsRegion',
      'body',
      'eventSource',
      'eventSourceARN',
      'md5OfBody',
      'md5OfMessageAttributes',
      'messageAttributes',
      'messageId',
      'receiptHandle',
    ]);
    assert.equal(record.body, body);
    assert.equal(record.md5OfBody, createHash('md5').update(body).digest('hex'));
    assert.match(record.md5OfMessageAttributes!, /^[0-9a-f]{32}$/);
    assert.equal(record.eventSource, 'aws:sqs');
    assert.equal(record.eventSourceARN, await queueArn(queueUrl));
    assert.match(record.eventSourceARN, /^arn:aws:sqs:us-east-1:\d{12}:poller-test-\d+$/);
    assert.equal(record.awsRegion, 'us-east-1');
    assert.deepEqual(Object.keys(record.attributes).sort(), [
      'ApproximateFirstReceiveTimestamp',
      'ApproximateReceiveCount',
      'SenderId',
      'SentTimestamp',
    ]);
    assert.equal(record.attributes.ApproximateReceiveCount, '1');
    for (const value of Object.values(record.attributes)) assert.equal(typeof value, 'string');
    assert.match(record.attributes.SentTimestamp, /^\d{13}$/);
    assert.deepEqual(record.messageAttributes, {
      kind: { stringValue: 'test', stringListValues: [], binaryListValues: [], dataType: 'String' },
      count: { stringValue: '3', stringListValues: [], binaryListValues: [], dataType: 'Number' },
      blob: { binaryValue: 'AAEC/w==', stringListValues: [], binaryListValues: [], dataType: 'Binary' },
    });
    assert.equal(seenContext!.functionName, queueUrl.split('/').at(-1));
    assert.match(seenContext!.awsRequestId, /^[0-9a-f-]{36}$/);
    assert.ok(seenContext!.getRemainingTimeInMillis() > 0);
    assert.match(seenContext!.invokedFunctionArn, /^arn:aws:lambda:us-east-1:/);
  });

  it('deletes the records a batch reports done and redelivers only the listed failures', async () => {
    const { queueUrl } = await freshQueue();
    const ids = await send(queueUrl, ['a', 'b', 'c']);
    const { events, poller } = await pollUntil(
      queueUrl,
      async (event, call) =>
        call === 1 ? { batchItemFailures: [{ itemIdentifier: event.Records[1]!.messageId }] } : undefined,
      (events) => events.length === 2,
    );
    assert.deepEqual(events[0]!.Records.map((record) => record.messageId).sort(), [...ids].sort());
    const retried = events[1]!.Records;
    assert.equal(retried.length, 1);
    assert.equal(retried[0]!.messageId, events[0]!.Records[1]!.messageId);
    assert.equal(retried[0]!.attributes.ApproximateReceiveCount, '2');
    assert.equal(await queueDepth(queueUrl), 0);
    assert.deepEqual(
      { received: poller.stats.received, deleted: poller.stats.deleted, failed: poller.stats.failed },
      { received: 4, deleted: 3, failed: 1 },
    );
  });

  it('leaves the whole batch on the queue when the handler throws', async () => {
    const { queueUrl } = await freshQueue();
    const ids = await send(queueUrl, ['a', 'b', 'c']);
    const { events } = await pollUntil(
      queueUrl,
      async (_event, call) => {
        if (call === 1) throw new Error('boom');
        return undefined;
      },
      (events) => events.flatMap((event) => event.Records).length === 6,
    );
    const second = events.slice(1).flatMap((event) => event.Records);
    assert.deepEqual(second.map((record) => record.messageId).sort(), [...ids].sort());
    for (const record of second) assert.equal(record.attributes.ApproximateReceiveCount, '2');
    assert.equal(await queueDepth(queueUrl), 0);
  });

  it('fails the whole batch when batchItemFailures names an unknown record, as Lambda does', async () => {
    const { queueUrl } = await freshQueue();
    await send(queueUrl, ['a', 'b']);
    const { events, poller } = await pollUntil(
      queueUrl,
      async (_event, call) =>
        call === 1 ? { batchItemFailures: [{ itemIdentifier: 'no-such-id' }] } : undefined,
      (events) => events.flatMap((event) => event.Records).length === 4,
    );
    for (const record of events.slice(1).flatMap((event) => event.Records)) {
      assert.equal(record.attributes.ApproximateReceiveCount, '2');
    }
    assert.equal(poller.stats.invocationErrors, 1);
  });

  it('moves a record that keeps failing to the DLQ after maxReceiveCount receives', async () => {
    const { queueUrl, dlqUrl } = await freshQueue(2);
    const [id] = await send(queueUrl, ['poison']);
    const { events } = await pollUntil(
      queueUrl,
      async (event) => ({ batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) }),
      (events) => events.length === 2,
    );
    assert.deepEqual(
      events.map((event) => event.Records[0]!.attributes.ApproximateReceiveCount),
      ['1', '2'],
    );
    let dead: string | undefined;
    for (let tries = 0; tries < 5 && !dead; tries++) {
      // The queue moves the record to the DLQ on the receive after its visibility expires.
      await emulator.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
      const fromDlq = await emulator.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl }));
      dead = fromDlq.Messages?.[0]?.MessageId;
    }
    assert.equal(dead, id);
    assert.equal(await queueDepth(queueUrl), 0);
  });

  it("does not touch the visibility a handler set on a failed record (deliver's backoff)", async () => {
    const { queueUrl } = await freshQueue();
    const [id] = await send(queueUrl, ['retry me']);
    const { events } = await pollUntil(
      queueUrl,
      async (event, call) => {
        const record = event.Records[0]!;
        if (call > 1) return undefined;
        // Visibility far beyond the test's length: only a poller that resets it would bring it back.
        await emulator.sqs.send(
          new ChangeMessageVisibilityCommand({
            QueueUrl: queueUrl,
            ReceiptHandle: record.receiptHandle,
            VisibilityTimeout: 3600,
          }),
        );
        return { batchItemFailures: [{ itemIdentifier: record.messageId }] };
      },
      (events) => events.length === 1,
    );
    assert.equal(events[0]!.Records[0]!.messageId, id);
    const again = await emulator.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 2 }),
    );
    assert.equal(again.Messages, undefined);
    assert.equal(await queueDepth(queueUrl), 1);
  });

  it('fills a batch beyond 10 records within maxBatchingWindowMs', async () => {
    const { queueUrl } = await freshQueue();
    const ids = await send(
      queueUrl,
      Array.from({ length: 15 }, (_, i) => `m${i}`),
    );
    const events: SQSEvent[] = [];
    let done: () => void;
    const handled = new Promise<void>((resolve) => {
      done = resolve;
    });
    const poller = await startPoller({
      sqs: emulator.sqs,
      queueUrl,
      batchSize: 15,
      maxBatchingWindowMs: 1000,
      concurrency: 1,
      waitTimeSeconds: 1,
      handler: async (event) => {
        events.push(event);
        done();
      },
    });
    await handled;
    await poller.stop();
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]!.Records.map((record) => record.messageId).sort(), [...ids].sort());
    assert.equal(await queueDepth(queueUrl), 0);
  });

  it('stop() waits for the batch in flight to finish, then deletes it', async () => {
    const { queueUrl } = await freshQueue();
    await send(queueUrl, ['slow']);
    let started: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    let release: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let finished = false;
    const poller = await startPoller({
      sqs: emulator.sqs,
      queueUrl,
      waitTimeSeconds: 1,
      handler: async () => {
        started();
        await released;
        finished = true;
      },
    });
    await handlerStarted;
    let stopped = false;
    const stopping = poller.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(stopped, false);
    release!();
    await stopping;
    assert.equal(finished, true);
    assert.equal(poller.stats.deleted, 1);
    assert.equal(await queueDepth(queueUrl), 0);
  });
});
