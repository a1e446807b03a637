import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import nodemailer from 'nodemailer';
import { BUCKET_PREFIXES } from '../../core/index.ts';
import { emulatorClients } from '../../dev/index.ts';
import { startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import {
  type AwsOperation,
  type FaultProxy,
  type FaultRule,
  startFaultProxy,
} from '../../harness/fault-proxy.ts';
import { freePort, type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { Storage } from '../../infra/index.ts';
import { storageClients } from '../../listener/index.ts';
import { cdkContext } from '../infra/helpers.ts';
import {
  delay,
  EventCollector,
  listRawKeys,
  makeMessage,
  queuedId,
  RawSmtp,
  startTestListener,
  type TestListener,
  testConfig,
} from '../listener/helpers.ts';

const STORAGE_FAILURE = '451 4.3.0 Temporary storage failure, try again later';
const QUEUEING_FAILURE = '451 4.3.0 Temporary queueing failure, try again later';
const MULTIPART = 6 * 1024 * 1024;

/** S3 commands a client sent, with their input and output, observed on its middleware stack. */
function recordCommands(s3: S3Client): { command: string; uploadId?: string }[] {
  const seen: { command: string; uploadId?: string }[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const input = args.input as { UploadId?: string };
      const output = result.output as { UploadId?: string };
      const uploadId = input.UploadId ?? output.UploadId;
      seen.push({ command: context.commandName ?? '', ...(uploadId ? { uploadId } : {}) });
      return result;
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return seen;
}

describe('faults: S3 and SQS failing under the listener', () => {
  let emulator: TestEmulator;
  let proxy: FaultProxy;
  let clients: ReturnType<typeof emulatorClients>;
  let listener: TestListener;
  let events: EventCollector;

  before(async () => {
    emulator = await startTestEmulator();
    proxy = await startFaultProxy(emulator.emulator.endpoint);
    clients = emulatorClients(proxy.endpoint);
    listener = await startTestListener(emulator, testConfig(), clients);
    events = new EventCollector(emulator.sqs, emulator.resources.inboundQueueUrl);
  });

  afterEach(() => proxy.clear());

  after(async () => {
    await listener.close();
    clients.s3.destroy();
    clients.sqs.destroy();
    await proxy.close();
    await emulator.close();
  });

  async function send(sender: string, size: number): Promise<string> {
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    const reply = await client.send(sender, ['someone@example.test'], makeMessage(size, sender));
    client.close();
    return reply;
  }

  const count = (op: AwsOperation) => proxy.calls.get(op) ?? 0;

  const storageFaults: [string, FaultRule, number][] = [
    ['PutObject answering 500', { ops: ['S3.PutObject'], action: { kind: 'fail', status: 500 } }, 2000],
    ['PutObject answering 503', { ops: ['S3.PutObject'], action: { kind: 'fail', status: 503 } }, 2000],
    ['PutObject connections reset', { ops: ['S3.PutObject'], action: { kind: 'drop' } }, 2000],
    ['UploadPart answering 500', { ops: ['S3.UploadPart'], action: { kind: 'fail' } }, MULTIPART],
    ['UploadPart connections reset', { ops: ['S3.UploadPart'], action: { kind: 'drop' } }, MULTIPART],
    [
      'CompleteMultipartUpload answering 500',
      { ops: ['S3.CompleteMultipartUpload'], action: { kind: 'fail' } },
      MULTIPART,
    ],
  ];
  for (const [label, rule, size] of storageFaults) {
    it(`${label} on every try: 451, no event, no object, no upload left open`, async () => {
      const sender = `${label.replaceAll(' ', '-').toLowerCase()}@sender.test`;
      const keysBefore = await listRawKeys(emulator.s3, emulator.resources.bucket);
      const [created, aborted] = [count('S3.CreateMultipartUpload'), count('S3.AbortMultipartUpload')];
      const fault = proxy.add(rule);
      assert.equal(await send(sender, size), STORAGE_FAILURE);
      // The SDK retried before giving up: a single failed call does not bounce mail (see below).
      assert.ok(fault.hits >= 2, `${fault.hits} faulted calls`);
      assert.deepEqual(await events.from(sender), []);
      assert.deepEqual(await listRawKeys(emulator.s3, emulator.resources.bucket), keysBefore);
      assert.equal(
        count('S3.AbortMultipartUpload') - aborted,
        count('S3.CreateMultipartUpload') - created,
        'every multipart upload started was aborted',
      );
    });
  }

  it('one failed call is retried by the SDK and the message is accepted', async () => {
    proxy.add({ ops: ['S3.PutObject'], action: { kind: 'fail', status: 503 }, nth: [1] });
    proxy.add({ ops: ['SQS.SendMessageBatch'], action: { kind: 'drop' }, nth: [1] });
    const id = queuedId(await send('transient@sender.test', 2000));
    const event = await events.get(id);
    assert.equal(event.envelope.mailFrom, 'transient@sender.test');
  });

  it('SendMessageBatch failing after the object is stored: 451, and the orphan can be found and expires', async () => {
    const keysBefore = await listRawKeys(emulator.s3, emulator.resources.bucket);
    await events.poll();
    proxy.add({ ops: ['SQS.SendMessageBatch'], action: { kind: 'fail' } });
    assert.equal(await send('orphan@sender.test', 4000), QUEUEING_FAILURE);
    proxy.clear();
    assert.deepEqual(await events.from('orphan@sender.test'), []);

    // Accounting: raw objects that no InboundEvent names are the orphans of failed queueing.
    const referenced = new Set([...events.events.values()].map((event) => event.raw.key));
    const orphans = [...(await listRawKeys(emulator.s3, emulator.resources.bucket))].filter(
      (key) => !keysBefore.has(key) && !referenced.has(key),
    );
    assert.equal(orphans.length, 1);
    assert.match(orphans[0]!, /^raw\/\d{4}\/\d{2}\/\d{2}\/[0-9A-Z]{26}\.eml$/);

    // In AWS the bucket's lifecycle rule expires everything under raw/, orphans included.
    const stack = new Stack(new App({ context: cdkContext() }), 'Faults');
    new Storage(stack, 'Storage');
    const rules = Template.fromStack(stack).findResources('AWS::S3::Bucket');
    const lifecycle = Object.values(rules).flatMap(
      (bucket) =>
        (bucket as { Properties: { LifecycleConfiguration?: { Rules: Record<string, unknown>[] } } })
          .Properties.LifecycleConfiguration?.Rules ?? [],
    );
    assert.ok(
      lifecycle.some(
        (rule) =>
          rule.Prefix === BUCKET_PREFIXES.raw &&
          rule.Status === 'Enabled' &&
          Number(rule.ExpirationInDays) > 0,
      ),
      'a raw/ expiration rule',
    );
    assert.ok(lifecycle.some((rule) => rule.AbortIncompleteMultipartUpload !== undefined));
  });
});

describe('faults: storage slower than the sending client waits', () => {
  const SECRET = 'whsec_c2xvdy1zdG9yYWdlLXNlY3JldA==';
  let receiver: WebhookReceiver;
  let pipeline: Pipeline;
  let control: TestControlStore;

  before(async () => {
    receiver = await startWebhookReceiver({ secret: SECRET });
    // Duplicates are marked by a conditional write in the control table.
    control = await startTestControlStore();
    pipeline = await startPipeline({
      routes: [
        { id: 'all', match: ['*@example.test'], endpoints: [receiver.url], secret: { value: SECRET } },
      ],
      controlStore: control.store,
    });
  });

  afterEach(() => pipeline.proxy.clear());

  after(async () => {
    await pipeline.close();
    await receiver.close();
    await control.close();
  });

  for (const op of ['S3.PutObject', 'SQS.SendMessageBatch'] as const) {
    it(`${op} delayed past the client's timeout: the session ends cleanly, the retry is marked a duplicate`, async () => {
      const tag = op.replace('.', '-');
      const raw = makeMessage(3000, `slow-${tag}`, `slow-${tag}@example.test`);
      const envelope = { from: `slow-${tag}@sender.test`, to: [`slow-${tag}@example.test`] };
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: pipeline.smtpPort,
        secure: false,
        tls: { rejectUnauthorized: false },
        socketTimeout: 800,
      });
      const seenBefore = receiver.unique.size;
      try {
        const slow = pipeline.proxy.add({ ops: [op], action: { kind: 'delay', ms: 2500 }, times: 1 });
        await assert.rejects(transport.sendMail({ envelope, raw }), /timeout/i);
        assert.equal(slow.hits, 1);
        // The sender saw no 250, so it sends the very same message again.
        const info = await transport.sendMail({ envelope, raw });
        assert.match(info.response, /^250 2\.0\.0 queued as /);
      } finally {
        transport.close();
      }
      // The first copy was stored after all, late: both arrive, with distinct webhook-ids, and
      // exactly one says it repeats the other.
      await receiver.waitForUnique(seenBefore + 2, 20_000);
      const copies = [...receiver.unique.values()]
        .slice(seenBefore)
        .map((entry) => entry.payload as { id: string; warnings: string[] });
      assert.equal(copies.length, 2);
      const [a, b] = copies as [{ id: string; warnings: string[] }, { id: string; warnings: string[] }];
      const marks = copies.flatMap((copy) =>
        copy.warnings.filter((warning) => warning.startsWith('duplicate:')),
      );
      assert.equal(marks.length, 1);
      const duplicate = a.warnings.length > 0 ? a : b;
      const original = duplicate === a ? b : a;
      assert.deepEqual(duplicate.warnings, [
        `duplicate: same content and envelope as message ${original.id}`,
      ]);
      assert.deepEqual(original.warnings, []);
    });
  }
});

describe('faults: storage missing, unreachable or hanging, and senders that abort mid-DATA', () => {
  let emulator: TestEmulator;
  let events: EventCollector;

  before(async () => {
    emulator = await startTestEmulator();
    events = new EventCollector(emulator.sqs, emulator.resources.inboundQueueUrl);
  });

  after(async () => {
    await emulator.close();
  });

  async function deliver(port: number, sender: string, size = 2000): Promise<string> {
    const client = await RawSmtp.open(port);
    await client.hello();
    const reply = await client.send(sender, ['someone@example.test'], makeMessage(size, sender));
    client.close();
    return reply;
  }

  it('answers 451 4.3.0 and queues no event when the bucket does not exist', async () => {
    const listener = await startTestListener(emulator, testConfig(), { bucket: 'no-such-bucket-here' });
    const reply = await deliver(listener.port('mx'), 'nobucket@sender.test');
    assert.equal(reply, '451 4.3.0 Temporary storage failure, try again later');
    assert.deepEqual(await events.from('nobucket@sender.test'), []);
    await listener.close();
  });

  it('answers 451 4.3.0 and queues no event when S3 cannot be reached (multipart path)', async () => {
    const s3 = new S3Client({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      maxAttempts: 2,
    });
    const listener = await startTestListener(emulator, testConfig(), { s3 });
    const reply = await deliver(listener.port('mx'), 'nos3@sender.test', 6 * 1024 * 1024);
    assert.equal(reply, '451 4.3.0 Temporary storage failure, try again later');
    assert.deepEqual(await events.from('nos3@sender.test'), []);
    await listener.close();
    s3.destroy();
  });

  it('answers 451 4.3.0 when the event cannot be queued', async () => {
    const inboundQueueUrl = `${emulator.emulator.endpoint}/000000000000/no-such-queue`;
    const listener = await startTestListener(emulator, testConfig(), { inboundQueueUrl });
    const reply = await deliver(listener.port('mx'), 'nosqs@sender.test');
    assert.equal(reply, '451 4.3.0 Temporary queueing failure, try again later');
    assert.deepEqual(await events.from('nosqs@sender.test'), []);
    await listener.close();
  });

  for (const [store, op, reply] of [
    ['S3', 'S3.PutObject', '451 4.3.0 Temporary storage failure, try again later'],
    ['SQS', 'SQS.SendMessageBatch', '451 4.3.0 Temporary queueing failure, try again later'],
  ] as const) {
    it(`answers 451 4.3.0 when ${store} hangs, after the storage timeouts rather than the hang`, async () => {
      const proxy = await startFaultProxy(emulator.emulator.endpoint);
      // Held for ten minutes: longer than this test, as long as a sender waits for its reply.
      const hang = proxy.add({ ops: [op], action: { kind: 'delay', ms: 600_000 } });
      const config = testConfig({ limits: { storageConnectTimeout: '1s', storageRequestTimeout: '1s' } });
      const { s3, sqs } = storageClients(config.limits, {
        region: 'us-east-1',
        endpoint: proxy.endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      });
      const listener = await startTestListener(emulator, config, { s3, sqs });
      assert.equal(await deliver(listener.port('mx'), `hang-${store}@sender.test`), reply);
      assert.equal(hang.hits, 3, 'the SDK tried three times, each cut off by the request timeout');
      assert.deepEqual(await events.from(`hang-${store}@sender.test`), []);
      await listener.close();
      s3.destroy();
      sqs.destroy();
      await proxy.close();
    });
  }

  for (const [label, senderFault, reply, queued] of [
    ['on its side once: the entry is sent again, 250', false, '250', 1],
    [
      'by the sender’s fault: 451 4.3.0, nothing queued',
      true,
      '451 4.3.0 Temporary queueing failure, try again later',
      0,
    ],
  ] as const) {
    it(`answers by SQS's answer for its own entry when SendMessageBatch fails it ${label}`, async () => {
      const proxy = await startFaultProxy(emulator.emulator.endpoint);
      const failing = proxy.add({
        ops: ['SQS.SendMessageBatch'],
        action: {
          kind: 'failEntries',
          entries: [0],
          senderFault,
          code: senderFault ? 'InvalidParameterValue' : 'InternalError',
        },
        times: 1,
      });
      const { s3, sqs } = emulatorClients(proxy.endpoint);
      const listener = await startTestListener(emulator, testConfig(), { s3, sqs });
      try {
        const sender = `partial-${senderFault}@sender.test`;
        assert.equal((await deliver(listener.port('mx'), sender)).slice(0, reply.length), reply);
        assert.equal(failing.hits, 1);
        assert.equal((await events.from(sender)).length, queued);
      } finally {
        await listener.close();
        s3.destroy();
        sqs.destroy();
        await proxy.close();
      }
    });
  }

  for (const [label, sentBeforeAbort] of [
    ['in the first part', 1024 * 1024],
    ['after multipart parts were uploaded', 12 * 1024 * 1024],
  ] as const) {
    it(`leaves no object and no open multipart upload when the client aborts mid-DATA ${label}`, async () => {
      const { s3, sqs } = emulatorClients(emulator.emulator.endpoint);
      const commands = recordCommands(s3);
      const listener = await startTestListener(emulator, testConfig(), { s3, sqs });
      const before = await listRawKeys(emulator.s3, emulator.resources.bucket);
      const client = await RawSmtp.open(listener.port('mx'));
      await client.startData('aborter@sender.test', 'someone@example.test');
      const body = makeMessage(sentBeforeAbort, 'abort');
      await new Promise<void>((resolve) => client.socket.write(body, () => resolve()));
      // Let the listener take in what was sent (and start parts) before the connection drops.
      await delay(300);
      client.close();
      // The listener awaits the upload's abort on close; that is where in-flight work settles.
      await listener.close();
      const created = commands.filter((entry) => entry.command === 'CreateMultipartUploadCommand');
      const aborted = new Set(
        commands
          .filter((entry) => entry.command === 'AbortMultipartUploadCommand')
          .map((entry) => entry.uploadId),
      );
      if (sentBeforeAbort > 5 * 1024 * 1024) assert.ok(created.length > 0, 'the multipart path was taken');
      for (const upload of created)
        assert.ok(aborted.has(upload.uploadId), `upload ${upload.uploadId} left open`);
      assert.ok(!commands.some((entry) => entry.command === 'CompleteMultipartUploadCommand'));
      assert.ok(!commands.some((entry) => entry.command === 'PutObjectCommand'));
      assert.deepEqual(await listRawKeys(emulator.s3, emulator.resources.bucket), before);
      assert.deepEqual(await events.from('aborter@sender.test'), []);
      s3.destroy();
      sqs.destroy();
    });
  }
});
