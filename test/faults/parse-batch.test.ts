import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { emulatorClients } from '../../dev/index.ts';
import { type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { sqsEvent } from '../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from '../functions/parse/harness.ts';

const message = (tag: string, bodyLines = 1) =>
  `From: a@sender.test\r\nTo: support@example.test\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@sender.test>\r\n\r\n${`body ${tag}\r\n`.repeat(bodyLines)}`;

describe('faults: the parse function failing for some records of a batch', () => {
  let harness: ParseHarness;
  let proxy: FaultProxy;
  let clients: ReturnType<typeof emulatorClients>;

  before(async () => {
    harness = await startParseHarness();
    proxy = await startFaultProxy(harness.emu.emulator.endpoint);
    clients = emulatorClients(proxy.endpoint);
  });

  after(async () => {
    clients.s3.destroy();
    clients.sqs.destroy();
    await proxy.close();
    await harness.close();
  });

  it('reports only the records whose raw object is missing or unreadable; the others are queued once', async () => {
    const [good, missing, unreadable, alsoGood] = await Promise.all(
      ['good', 'missing', 'unreadable', 'also-good'].map((tag) => harness.store(message(tag))),
    );
    await harness.emu.s3.send(
      new DeleteObjectCommand({ Bucket: missing!.raw.bucket, Key: missing!.raw.key }),
    );
    proxy.add({
      ops: ['S3.GetObject'],
      pathIncludes: unreadable!.raw.key,
      action: { kind: 'fail', status: 503 },
    });

    const event = sqsEvent([good, missing, unreadable, alsoGood]);
    const response = await harness.handler({ s3: clients.s3, sqs: clients.sqs })(event);

    const failed = response.batchItemFailures.map((failure) => failure.itemIdentifier).sort();
    assert.deepEqual(failed, [event.Records[1]!.messageId, event.Records[2]!.messageId].sort());
    const jobs = await harness.drainJobs();
    assert.deepEqual(jobs.map((job) => job.messageId).sort(), [good!.id, alsoGood!.id].sort());

    // The failed records come back (SQS redelivers them); with S3 healthy again they go through.
    proxy.clear();
    const retry = await harness.handler({ s3: clients.s3, sqs: clients.sqs })({
      Records: [event.Records[2]!],
    });
    assert.deepEqual(retry.batchItemFailures, []);
    assert.deepEqual(
      (await harness.drainJobs()).map((job) => job.messageId),
      [unreadable!.id],
    );
  });

  it('a payload write failing for one record fails that record only', async () => {
    // w2's payload is too large to ride in its job (over 1 MiB of text), so it is written to S3.
    const records = await Promise.all(
      ['w1', 'w2', 'w3'].map((tag) => harness.store(message(tag, tag === 'w2' ? 100_000 : 1))),
    );
    proxy.add({
      ops: ['S3.PutObject'],
      pathIncludes: `payloads/${records[1]!.id}/`,
      action: { kind: 'drop' },
    });
    const event = sqsEvent(records);
    const response = await harness.handler({ s3: clients.s3, sqs: clients.sqs })(event);
    proxy.clear();
    assert.deepEqual(response.batchItemFailures, [{ itemIdentifier: event.Records[1]!.messageId }]);
    const jobs = await harness.drainJobs();
    assert.deepEqual(jobs.map((job) => job.messageId).sort(), [records[0]!.id, records[2]!.id].sort());
  });

  it('SQS failing some delivery jobs on its side: those are sent again, and each job is queued once', async () => {
    // billing has two endpoints: one message, two jobs in one SendMessageBatch; the second fails once.
    const stored = await harness.store(message('partial'), { rcptTo: ['billing@example.test'] });
    const failing = proxy.add({
      ops: ['SQS.SendMessageBatch'],
      action: { kind: 'failEntries', entries: [1] },
      times: 1,
    });
    const response = await harness.handler({ s3: clients.s3, sqs: clients.sqs })(sqsEvent([stored]));
    proxy.clear();
    assert.equal(failing.hits, 1);
    assert.deepEqual(response.batchItemFailures, [], 'no record retried, so no job sent twice');
    const jobs = await harness.drainJobs();
    assert.deepEqual(jobs.map((job) => job.endpoint).sort(), [
      'https://audit.app.test/billing',
      'https://hooks.app.test/billing',
    ]);
  });

  it('SQS refusing a delivery job by the sender’s fault: the record fails and comes back', async () => {
    const stored = await harness.store(message('refused'), { rcptTo: ['billing@example.test'] });
    proxy.add({
      ops: ['SQS.SendMessageBatch'],
      action: { kind: 'failEntries', entries: [0], senderFault: true, code: 'InvalidParameterValue' },
      times: 1,
    });
    const event = sqsEvent([stored]);
    const response = await harness.handler({ s3: clients.s3, sqs: clients.sqs })(event);
    proxy.clear();
    assert.deepEqual(response.batchItemFailures, [{ itemIdentifier: event.Records[0]!.messageId }]);
    // What SQS took stays taken; the retried record sends both again (webhook ids dedupe downstream).
    assert.equal((await harness.drainJobs()).length, 1);
  });

  it('concurrent invocations of one handler each report their own failed records', async () => {
    // The local poller runs several batches at once through one handler instance.
    const handler = harness.handler({ s3: clients.s3, sqs: clients.sqs });
    const stored = await Promise.all(['c1', 'c2', 'c3', 'c4'].map((tag) => harness.store(message(tag))));
    await harness.emu.s3.send(
      new DeleteObjectCommand({ Bucket: stored[0]!.raw.bucket, Key: stored[0]!.raw.key }),
    );
    const withFailure = sqsEvent([stored[0], stored[1]]);
    const allGood = sqsEvent([stored[2], stored[3]]);
    const [first, second] = await Promise.all([handler(withFailure), handler(allGood)]);
    assert.deepEqual(first.batchItemFailures, [{ itemIdentifier: withFailure.Records[0]!.messageId }]);
    assert.deepEqual(second.batchItemFailures, []);
    await harness.drainJobs();
  });
});
