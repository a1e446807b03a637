import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { emulatorClients } from '../../dev/index.ts';
import { storageClients } from '../../listener/index.ts';
import { startTestEmulator, type TestEmulator } from '../helpers/emulator.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { freePort } from '../helpers/pipeline.ts';
import {
  delay,
  EventCollector,
  listRawKeys,
  makeMessage,
  RawSmtp,
  startTestListener,
  testConfig,
} from './helpers.ts';

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

describe('listener: fault injection', () => {
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
