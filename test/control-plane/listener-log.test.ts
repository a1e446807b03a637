import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { describeTimelineEvent, dynamoControlStore } from '../../core/control/index.ts';
import { emulatorClients } from '../../dev/index.ts';
import { inboundEventFromLog } from '../../functions/index.ts';
import {
  dynamoClient,
  startTestControlStore,
  TABLE,
  type TestControlStore,
} from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { sendFrom } from '../../harness/filtering-messages.ts';
import { freePort } from '../../harness/pipeline.ts';
import { until } from '../../harness/wait.ts';
import {
  EventCollector,
  makeMessage,
  queuedId,
  RawSmtp,
  startTestListener,
  testConfig,
} from '../listener/helpers.ts';

/** One message over a raw session; the final reply. */
async function sendRaw(port: number, to: string, body: Buffer): Promise<string> {
  const client = await RawSmtp.open(port);
  try {
    await client.command('EHLO client.test');
    await client.command('MAIL FROM:<ann@sender.test>');
    await client.command(`RCPT TO:<${to}>`);
    await client.command('DATA');
    client.write(body);
    client.write('\r\n.\r\n');
    return await client.reply(30_000);
  } finally {
    client.close();
  }
}

describe('listener and the message log store between it and dynalite', () => {
  let emulator: TestEmulator;
  let control: TestControlStore;
  let proxy: FaultProxy;
  let events: EventCollector;

  before(async () => {
    emulator = await startTestEmulator();
    control = await startTestControlStore();
    proxy = await startFaultProxy(control.dynamo.endpoint);
    events = new EventCollector(emulator.sqs, emulator.resources.inboundQueueUrl);
  });
  after(async () => {
    await proxy.close();
    await control.close();
    await emulator.close();
  });

  /** A listener whose control store goes through the fault proxy, with fast log retries. */
  const listenerThroughProxy = (log = {}) => {
    const client = dynamoClient(proxy.endpoint);
    return startTestListener(emulator, testConfig(), {
      control: {
        store: dynamoControlStore(client, TABLE),
        log: { retryBaseMs: 50, retryMaxMs: 200, ...log },
      },
    });
  };

  it('a failing log store costs no 250: the message is queued, and its received event written once the store is back', async () => {
    const listener = await listenerThroughProxy();
    try {
      proxy.add({ ops: ['DynamoDB.UpdateItem'], action: { kind: 'fail' } });
      const reply = await sendRaw(listener.port('mx'), 'a@example.test', makeMessage(2000, 'log-down'));
      assert.match(reply, /^250 2\.0\.0 queued as /);
      const id = queuedId(reply);
      assert.equal((await events.get(id)).envelope.rcptTo[0], 'a@example.test');
      await until('two UpdateItem calls', () => (proxy.calls.get('DynamoDB.UpdateItem') ?? 0) >= 2);
      assert.equal(await control.store.getMessage(id), undefined);

      proxy.clear();
      proxy.add({ action: { kind: 'drop' } });
      const second = await sendRaw(listener.port('mx'), 'b@example.test', makeMessage(2000, 'log-gone'));
      assert.match(second, /^250 2\.0\.0 queued as /);
      await events.get(queuedId(second));

      proxy.clear();
      for (const [messageId, to] of [
        [id, 'a@example.test'],
        [queuedId(second), 'b@example.test'],
      ] as const) {
        const stored = await until('the stored message', () => control.store.getMessage(messageId));
        const received = stored.timeline.find((event) => event.type === 'received');
        assert.deepEqual(received?.type === 'received' && received.rcptTo, [to]);
        assert.equal(stored.timeline.length, 1);
      }
    } finally {
      proxy.clear();
      await listener.close();
    }
  });

  it('the received event carries the filtering facts and the sha256 the listener queued; a retry rebuilds that event from the log', async () => {
    // rspamd configured but not running: its verdict is unavailable, and this route holds such mail.
    const config = testConfig({
      scanners: { rspamd: { url: `http://127.0.0.1:${await freePort()}` } },
      routes: [
        {
          id: 'held',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:1/hook'],
          secret: { value: 'whsec_dGVzdA==' },
          filtering: { onUnavailable: 'quarantine' },
        },
      ],
    });
    const listener = await startTestListener(emulator, config, {
      control: { store: control.store, log: { batchDelayMs: 10 } },
    });
    try {
      const reply = await sendRaw(listener.port('mx'), 'held@example.test', makeMessage(1500, 'held'));
      const queued = await events.get(queuedId(reply));
      assert.deepEqual(queued.filtering?.routes, {
        held: { action: 'quarantine', reasons: ['scanner_unavailable'] },
      });
      const stored = await until('the stored message', () => control.store.getMessage(queued.id));
      const received = stored.timeline[0];
      assert.ok(received?.type === 'received');
      assert.deepEqual(received.filtering, queued.filtering);
      assert.equal(received.sha256, queued.raw.sha256);
      assert.match(
        describeTimelineEvent(received),
        /; spam scan unavailable \(error\), route held quarantined \(scanner_unavailable\)$/,
      );
      // What a retry or release queues again: the event as the listener queued it, but for what
      // only the session knew (ports, the AUTH user), which parse does not use.
      assert.deepEqual(await inboundEventFromLog(stored, emulator.s3), {
        ...queued,
        envelope: { ...queued.envelope, remotePort: 0, localPort: 0, authUser: null },
      });
    } finally {
      await listener.close();
    }
  });

  it('on shutdown the received events still queued are written before close resolves', async () => {
    // A batch delay longer than the test: only close() can write it.
    const listener = await listenerThroughProxy({ batchDelayMs: 600_000 });
    const reply = await sendRaw(listener.port('mx'), 'c@example.test', makeMessage(1000, 'drain'));
    const id = queuedId(reply);
    await events.get(id);
    assert.equal(await control.store.getMessage(id), undefined);
    await listener.close();
    const stored = await control.store.getMessage(id);
    assert.equal(stored?.timeline[0]?.type, 'received');
    assert.deepEqual(stored?.raw?.bucket, emulator.resources.bucket);
  });

  it('a SIZE= refused at MAIL FROM is a logged refusal with the reply sent', async () => {
    const listener = await listenerThroughProxy({ batchDelayMs: 10 });
    try {
      const client = await RawSmtp.open(listener.port('mx'));
      await client.command('EHLO client.test');
      const reply = await client.command('MAIL FROM:<big@sender.test> SIZE=999999999999');
      client.close();
      assert.match(reply, /^552 5\.3\.4 /);
      const refusal = await until('the refusal', async () => {
        const page = await control.store.listRefusals({
          since: new Date(Date.now() - 60_000).toISOString(),
          limit: 50,
        });
        return page.items.find((item) => item.reply.startsWith('552 '));
      });
      assert.equal(refusal.reply, reply);
      assert.equal(refusal.recipient, '');
    } finally {
      await listener.close();
    }
  });

  it('a message refused for good at the end of DATA is a refusal of each recipient with the reply sent; a 451 is none', async () => {
    const storage = await startFaultProxy(emulator.emulator.endpoint);
    const clients = emulatorClients(storage.endpoint);
    const listener = await startTestListener(
      emulator,
      testConfig({ limits: { maxMessageBytes: 64 * 1024, rejectBareLf: true } }),
      { ...clients, control: { store: control.store, log: { batchDelayMs: 10 } } },
    );
    try {
      // S3 down: the sender keeps the mail and tries again; nothing bounced.
      storage.add({ ops: ['S3.PutObject'], action: { kind: 'fail' } });
      const down = await sendRaw(listener.port('mx'), 'down@example.test', makeMessage(2000, 'down'));
      assert.match(down, /^451 4\.3\.0 /);
      storage.clear();
      const big = await sendFrom(listener.port('mx'), {
        from: 'big@sender.test',
        to: ['a@example.test', 'b@example.test'],
        body: `Subject: big\r\n\r\n${'A line of a large message body.\r\n'.repeat(3000)}`,
      });
      assert.equal(big.code, 552);
      const bareLf = await sendRaw(
        listener.port('mx'),
        'lf@example.test',
        Buffer.from('Subject: lf\n\nbare\n'),
      );
      assert.match(bareLf, /^550 5\.6\.0 /);

      const since = new Date(Date.now() - 60_000).toISOString();
      const refusals = await until('the refusals of the message too large and of the bare LF', async () => {
        const { items } = await control.store.listRefusals({ since, limit: 100 });
        return items.some((item) => item.recipient === 'lf@example.test') && items;
      });
      const about = (recipient: string) =>
        refusals
          .filter((item) => item.recipient === recipient)
          .map(({ mailFrom, reply }) => ({ mailFrom, reply }));
      assert.deepEqual(about('a@example.test'), [{ mailFrom: 'big@sender.test', reply: big.response }]);
      assert.deepEqual(about('b@example.test'), [{ mailFrom: 'big@sender.test', reply: big.response }]);
      assert.match(big.response!, /^552 5\.3\.4 .*maximum message size/);
      assert.deepEqual(about('lf@example.test'), [{ mailFrom: 'ann@sender.test', reply: bareLf }]);
      assert.deepEqual(about('down@example.test'), []);
    } finally {
      await listener.close();
      clients.s3.destroy();
      clients.sqs.destroy();
      await storage.close();
    }
  });

  it('a listener that cannot load its routes does not start', async () => {
    proxy.add({ ops: ['DynamoDB.Query'], action: { kind: 'fail' } });
    try {
      await assert.rejects(listenerThroughProxy(), /InternalServerError|Internal server error/);
    } finally {
      proxy.clear();
    }
  });
});
