import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { type ControlStore, MessageLogWriter } from '../../core/control/index.ts';
import { newMessageId } from '../../core/index.ts';
import {
  type FaultyControlStore,
  receivedEvent as receivedEntry,
  startTestControlStore,
  TABLE,
  type TestControlStore,
} from '../../harness/control-store.ts';
import type { FaultAction, FaultProxy } from '../../harness/fault-proxy.ts';
import { tableArn } from '../../harness/iam-policy.ts';
import { until } from '../../harness/wait.ts';

const receivedEvent = () => receivedEntry().event;

/** A RCPT refusal as the listener records it. */
const unknownRecipient = () => ({
  at: new Date().toISOString(),
  recipient: 'nobody@example.test',
  mailFrom: 'x@spam.test',
  remoteAddress: '203.0.113.5',
  reply: '550 5.1.1 Mailbox <nobody@example.test> does not exist',
});

/**
 * The JSON documents (EMF, log lines) Powertools writes to stdout and stderr while `work` runs;
 * everything else (the test runner's report) passes through. Metrics are enabled meanwhile: make
 * them inside `work`.
 */
async function jsonWrittenBy(work: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const previous = process.env.POWERTOOLS_METRICS_DISABLED;
  delete process.env.POWERTOOLS_METRICS_DISABLED;
  const lines: string[] = [];
  const writes = [process.stdout, process.stderr].map((stream) => {
    const write = stream.write.bind(stream);
    stream.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      if (!String(chunk).startsWith('{')) return write(chunk, ...rest);
      lines.push(String(chunk));
      return true;
    }) as typeof stream.write;
    return () => {
      stream.write = write;
    };
  });
  try {
    await work();
  } finally {
    for (const restore of writes) restore();
    if (previous !== undefined) process.env.POWERTOOLS_METRICS_DISABLED = previous;
  }
  return lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

describe('MessageLogWriter', () => {
  let t: TestControlStore;
  let proxy: FaultProxy;
  let store: ControlStore;

  before(async () => {
    t = await startTestControlStore();
    ({ proxy, store } = await t.behindFaultProxy());
  });

  after(async () => {
    await t.close();
  });

  it('batches the events of a message into one write', async () => {
    const writer = new MessageLogWriter(store, { batchDelayMs: 20 });
    const id = newMessageId();
    const before = proxy.calls.get('DynamoDB.UpdateItem') ?? 0;
    writer.record(id, receivedEvent(), { bucket: 'mail', key: `raw/${id}.eml` });
    writer.record(id, {
      at: new Date().toISOString(),
      type: 'parsed',
      subject: 'Hi',
      from: null,
      jobs: [],
      unrouted: [],
      warnings: [],
    });
    assert.equal(await writer.flush(), true);
    assert.equal((proxy.calls.get('DynamoDB.UpdateItem') ?? 0) - before, 1);
    assert.equal((await t.store.getMessage(id))?.timeline.length, 2);
    assert.deepEqual(writer.stats, {
      pending: 0,
      written: 2,
      failedWrites: 0,
      dropped: 0,
      rejected: 0,
      refusalsSampledOut: 0,
    });
  });

  const failures: FaultAction[] = [{ kind: 'fail' }, { kind: 'throttle' }, { kind: 'drop' }];
  for (const action of failures) {
    it(`never throws at the caller while the store fails (${action.kind}), and writes everything once it is back`, async () => {
      const writer = new MessageLogWriter(store, { batchDelayMs: 5, retryBaseMs: 20, retryMaxMs: 100 });
      proxy.add({ action });
      const ids = Array.from({ length: 20 }, () => newMessageId());
      const started = performance.now();
      for (const id of ids) writer.record(id, receivedEvent());
      writer.refused(unknownRecipient());
      // Queuing is synchronous bookkeeping; the store is not on the caller's path.
      assert.ok(performance.now() - started < 50);
      await until('three failed writes', () => writer.stats.failedWrites >= 3);
      assert.equal(writer.stats.pending, 21);
      assert.equal(await writer.flush(100), false);
      proxy.clear();
      assert.equal(await writer.flush(10_000), true);
      for (const id of ids) assert.equal((await t.store.getMessage(id))?.timeline[0]?.type, 'received');
      assert.equal(writer.stats.written, 20);
      assert.equal(writer.stats.dropped, 0);
    });
  }

  it('counts failed writes as an EMF metric', async () => {
    const documents = await jsonWrittenBy(async () => {
      const metrics = new Metrics({ namespace: 'mailbridge', serviceName: 'test' });
      const writer = new MessageLogWriter(store, {
        batchDelayMs: 5,
        retryBaseMs: 20,
        retryMaxMs: 50,
        metrics,
      });
      proxy.add({ action: { kind: 'fail' }, times: 1 });
      writer.record(newMessageId(), receivedEvent());
      try {
        assert.equal(await writer.flush(5000), true);
      } finally {
        proxy.clear();
      }
    });
    const emf = documents.find((doc) => 'ControlLogWriteFailures' in doc) as
      | { ControlLogWriteFailures: number; _aws: { CloudWatchMetrics: { Namespace: string }[] } }
      | undefined;
    assert.ok(
      emf,
      `an EMF document with ControlLogWriteFailures in ${JSON.stringify(documents).slice(0, 300)}`,
    );
    assert.equal(emf.ControlLogWriteFailures, 1);
    assert.equal(emf._aws.CloudWatchMetrics[0]!.Namespace, 'mailbridge');
  });

  describe('a write the store refuses for good', () => {
    // A deployment that forgot the log grants: the role may read the table, not write it. DynamoDB
    // answers such a call 400 AccessDeniedException, every time.
    const readOnly = {
      Effect: 'Allow' as const,
      Action: ['dynamodb:GetItem', 'dynamodb:Query'],
      Resource: [tableArn(TABLE), `${tableArn(TABLE)}/index/*`],
    };
    let denied: FaultyControlStore;
    before(async () => {
      denied = await t.behindFaultProxy({ proxy: { aws: { roles: { local: [readOnly] } } } });
    });

    it('IAM denial: dropped without a retry, counted, logged once with the message id', async () => {
      const id = newMessageId();
      let writer: MessageLogWriter | undefined;
      const documents = await jsonWrittenBy(async () => {
        const metrics = new Metrics({ namespace: 'mailbridge', serviceName: 'test' });
        writer = new MessageLogWriter(denied.store, {
          batchDelayMs: 5,
          retryBaseMs: 20,
          retryMaxMs: 50,
          metrics,
          logger: new Logger({ serviceName: 'test', logLevel: 'WARN' }),
        });
        writer.record(id, receivedEvent());
        writer.record(id, { ...receivedEvent(), at: new Date().toISOString() });
        writer.refused(unknownRecipient());
        assert.equal(await writer.flush(2000), true, 'nothing left to retry');
        metrics.publishStoredMetrics();
      });
      assert.deepEqual(writer?.stats, {
        pending: 0,
        written: 0,
        failedWrites: 0,
        dropped: 0,
        rejected: 3,
        refusalsSampledOut: 0,
      });
      assert.deepEqual(
        denied.proxy.denials.map((denial) => denial.op).sort(),
        ['DynamoDB.BatchWriteItem', 'DynamoDB.UpdateItem'],
        'each write tried once',
      );
      const logged = documents.filter(
        (doc) => doc.message === 'message log write refused by the store; dropped',
      );
      assert.deepEqual(
        logged.map((doc) => [doc.level, doc.messageId ?? null, doc.events ?? doc.refusals]),
        [
          ['ERROR', id, ['received', 'received']],
          ['ERROR', null, 1],
        ],
      );
      const emf = documents.find((doc) => 'ControlLogRejected' in doc);
      // The message's two events, then the refusal: one EMF value per rejected write.
      assert.deepEqual(emf?.ControlLogRejected, [2, 1]);
      assert.equal(await t.store.getMessage(id), undefined);
    });

    it('an invalid item (ValidationException: over 400 KB): that write is dropped, the others are written', async () => {
      const writer = new MessageLogWriter(store, { batchDelayMs: 5, retryBaseMs: 20, retryMaxMs: 50 });
      const [oversize, ordinary] = [newMessageId(), newMessageId()];
      writer.record(oversize, { ...receivedEvent(), helo: 'h'.repeat(420 * 1024) });
      writer.record(ordinary, receivedEvent());
      assert.equal(await writer.flush(2000), true);
      assert.equal(writer.stats.rejected, 1);
      assert.equal(writer.stats.failedWrites, 0);
      assert.equal(await t.store.getMessage(oversize), undefined);
      assert.equal((await t.store.getMessage(ordinary))?.timeline.length, 1);
    });
  });

  it('holds a bounded number of events while the store is down, dropping and counting the rest', async () => {
    const writer = new MessageLogWriter(store, {
      batchDelayMs: 5,
      retryBaseMs: 20,
      retryMaxMs: 50,
      maxPending: 5,
    });
    proxy.add({ action: { kind: 'fail' } });
    for (let i = 0; i < 12; i++) writer.record(newMessageId(), receivedEvent());
    assert.equal(writer.stats.pending, 5);
    assert.equal(writer.stats.dropped, 7);
    proxy.clear();
    assert.equal(await writer.flush(10_000), true);
    assert.equal(writer.stats.written, 5);
  });

  it('stopping with the store down: what is left is counted as dropped and logged with its message ids', async () => {
    const id = newMessageId();
    let writer: MessageLogWriter | undefined;
    const documents = await jsonWrittenBy(async () => {
      const metrics = new Metrics({ namespace: 'mailbridge', serviceName: 'test' });
      writer = new MessageLogWriter(store, {
        batchDelayMs: 5,
        retryBaseMs: 20,
        retryMaxMs: 50,
        metrics,
        logger: new Logger({ serviceName: 'test', logLevel: 'WARN' }),
      });
      proxy.add({ action: { kind: 'fail' } });
      try {
        writer.record(id, receivedEvent());
        assert.equal(await writer.close(300), false);
      } finally {
        proxy.clear();
      }
      metrics.publishStoredMetrics();
    });
    assert.equal(writer?.stats.dropped, 1);
    const logged = documents.find((doc) => doc.message === 'message log events not written before stopping');
    assert.deepEqual([logged?.events, logged?.messageIds], [1, [id]]);
    assert.equal(documents.find((doc) => 'ControlLogDropped' in doc)?.ControlLogDropped, 1);
    // A process that goes on keeps trying: let that write end before the store closes.
    await writer?.flush(5000);
  });

  it('keeps at most the configured refusals per client and per minute', async () => {
    const writer = new MessageLogWriter(store, { refusalsPerClientPerMinute: 3, refusalsPerMinute: 5 });
    const at = new Date().toISOString();
    const refusal = (client: string, n: number) => ({
      at,
      recipient: `u${n}@example.test`,
      mailFrom: 'x@spam.test',
      remoteAddress: client,
      reply: `550 5.1.1 Mailbox <u${n}@example.test> does not exist`,
    });
    for (let n = 0; n < 10; n++) writer.refused(refusal('203.0.113.10', n));
    for (let n = 0; n < 10; n++) writer.refused(refusal('203.0.113.11', n));
    assert.equal(writer.stats.pending, 5);
    assert.equal(writer.stats.refusalsSampledOut, 15);
    assert.equal(await writer.flush(), true);
    const stored = await t.store.listRefusals({
      since: new Date(Date.now() - 60_000).toISOString(),
      limit: 100,
    });
    assert.equal(stored.items.filter((r) => r.remoteAddress.startsWith('203.0.113.1')).length, 5);
  });
});
