import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Metrics } from '@aws-lambda-powertools/metrics';
import {
  type ControlStore,
  dynamoControlStore,
  MessageLogWriter,
  type TimelineEvent,
} from '../../core/control/index.ts';
import { newMessageId } from '../../core/index.ts';
import {
  dynamoClient,
  startTestControlStore,
  TABLE,
  type TestControlStore,
} from '../../harness/control-store.ts';
import { type FaultAction, type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { until } from '../../harness/wait.ts';

const receivedEvent = (): TimelineEvent => ({
  at: new Date().toISOString(),
  type: 'received',
  mailFrom: 'a@sender.test',
  rcptTo: ['x@example.test'],
  size: 10,
  remoteAddress: '192.0.2.1',
  helo: 'sender.test',
  tls: false,
});

describe('MessageLogWriter', () => {
  let t: TestControlStore;
  let proxy: FaultProxy;
  let store: ControlStore;
  const clients: { destroy(): void }[] = [];

  before(async () => {
    t = await startTestControlStore();
    proxy = await startFaultProxy(t.dynamo.endpoint);
    const client = dynamoClient(proxy.endpoint);
    clients.push(client);
    store = dynamoControlStore(client, TABLE);
  });

  after(async () => {
    for (const client of clients) client.destroy();
    await proxy.close();
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
      writer.refused({
        at: new Date().toISOString(),
        recipient: 'nobody@example.test',
        mailFrom: 'x@spam.test',
        remoteAddress: '203.0.113.5',
        reply: '550 5.1.1 Mailbox <nobody@example.test> does not exist',
      });
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
    const previous = process.env.POWERTOOLS_METRICS_DISABLED;
    delete process.env.POWERTOOLS_METRICS_DISABLED;
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      const metrics = new Metrics({ namespace: 'mailbridge', serviceName: 'test' });
      const writer = new MessageLogWriter(store, {
        batchDelayMs: 5,
        retryBaseMs: 20,
        retryMaxMs: 50,
        metrics,
      });
      proxy.add({ action: { kind: 'fail' }, times: 1 });
      writer.record(newMessageId(), receivedEvent());
      assert.equal(await writer.flush(5000), true);
    } finally {
      process.stdout.write = write;
      if (previous !== undefined) process.env.POWERTOOLS_METRICS_DISABLED = previous;
      proxy.clear();
    }
    // The test runner shares stdout: keep the JSON documents only.
    const documents = lines.flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
    const emf = documents.find((doc) => 'ControlLogWriteFailures' in doc);
    assert.ok(
      emf,
      `an EMF document with ControlLogWriteFailures in ${lines.length} lines: ${lines.join('').slice(0, 300)}`,
    );
    assert.equal(emf.ControlLogWriteFailures, 1);
    assert.equal(emf._aws.CloudWatchMetrics[0].Namespace, 'mailbridge');
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
