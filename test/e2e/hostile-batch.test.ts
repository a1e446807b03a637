import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { DKIMSignOptions } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import type { InboundEvent, WebhookPayload } from '../../core/index.ts';
import type { DeadLetterEntry } from '../../functions/index.ts';
import { systemResolver } from '../../functions/index.ts';
import { type InjectedMessage, type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { until } from '../../harness/wait.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';

const SECRET = `whsec_${Buffer.from('hostile batch tests').toString('base64')}`;
const WAIT_MS = 45_000;
const ORDINARY = 9;

/**
 * Each hostile message goes in one inbound batch with nine ordinary ones (DESIGN: a 250 is
 * delivered or dead-lettered with a reason): the nine must each arrive exactly once, and the hostile
 * one arrive degraded or sit in a DLQ with its reason.
 */
function ordinary(n: number): InjectedMessage {
  return {
    raw:
      `From: Ann <ann@sender.test>\r\nTo: user${n}@example.test\r\nSubject: ordinary ${n}\r\n` +
      `Message-ID: <ordinary-${n}@sender.test>\r\nDate: Mon, 15 Jan 2024 10:00:00 +0000\r\n\r\nhello ${n}\r\n`,
    rcptTo: [`user${n}@example.test`],
  };
}

const route = (id: string, match: string, endpoints: string[]) => ({
  id,
  match: [match],
  endpoints,
  secret: { value: SECRET },
  retrySchedule: [1, 1],
});

/** Sends the hostile message and nine ordinary ones as one batch; the events, hostile first. */
async function sendBatch(pipeline: Pipeline, hostile: InjectedMessage): Promise<InboundEvent[]> {
  return pipeline.injectBatch([hostile, ...Array.from({ length: ORDINARY }, (_, n) => ordinary(n))]);
}

/** Waits for the nine ordinary messages and checks each came exactly once. */
async function assertNineDeliveredOnce(main: WebhookReceiver, events: readonly InboundEvent[]) {
  const ids = events.slice(1).map((event) => event.id);
  await until(
    'the nine ordinary messages',
    async () => ids.every((id) => main.received.some((entry) => entry.payload.id === id)),
    WAIT_MS,
  );
  for (const id of ids) {
    assert.equal(main.received.filter((entry) => entry.payload.id === id).length, 1, `message ${id}`);
  }
}

function payloadOf(receiver: WebhookReceiver, id: string): Promise<WebhookPayload> {
  return until(
    `the webhook of ${id}`,
    async () => {
      const entry = receiver.received.find((candidate) => candidate.payload.id === id);
      return entry?.payload as WebhookPayload | undefined;
    },
    WAIT_MS,
  );
}

/** The first entry of a DLQ about message `id`, left on the queue for others. */
function deadLetterOf<T extends { id?: string; messageId?: string }>(
  pipeline: Pipeline,
  queueUrl: string,
  id: string,
): Promise<T> {
  return until(
    `a DLQ entry for ${id}`,
    async () => {
      const { Messages } = await pipeline.emulator.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 1 }),
      );
      for (const message of Messages ?? []) {
        const entry = JSON.parse(message.Body!) as T;
        if (entry.id === id || entry.messageId === id) {
          await pipeline.emulator.sqs.send(
            new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }),
          );
          return entry;
        }
      }
      return undefined;
    },
    WAIT_MS,
  );
}

/** A plain-text message whose body is `bytes` of control characters, the worst case of JSON escaping. */
function controlBytes(bytes: number, rcpt: string): InjectedMessage {
  const line = Buffer.from(
    Array.from({ length: 998 }, (_, i) => [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 30, 31][i % 16]!),
  );
  const lines = Math.ceil(bytes / 1000);
  const head = Buffer.from(
    `From: <noise@sender.test>\r\nTo: ${rcpt}\r\nSubject: control bytes\r\nMIME-Version: 1.0\r\n` +
      'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
  );
  const crlf = Buffer.from('\r\n');
  return {
    raw: Buffer.concat([head, ...Array.from({ length: lines }, () => Buffer.concat([line, crlf]))]),
    rcptTo: [rcpt],
  };
}

/** A message with `count` small attachments with long names (each link in a job would be ~190 bytes). */
function manyAttachments(count: number, rcpt: string): InjectedMessage {
  const parts = Array.from(
    { length: count },
    (_, i) =>
      `--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="attachment-${i}-${'x'.repeat(80)}.txt"\r\n\r\nfile ${i}\r\n`,
  );
  return {
    raw:
      `From: <files@sender.test>\r\nTo: ${rcpt}\r\nSubject: ${count} attachments\r\nMIME-Version: 1.0\r\n` +
      `Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n${parts.join('')}--B--\r\n`,
    rcptTo: [rcpt],
  };
}

/** An endpoint that refuses every webhook with a body holding U+FFFF, which SQS does not accept. */
async function refusingEndpoint(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('bad \uffff input'),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, server };
}

describe('hostile message in a batch of ten: the nine are delivered once, it is delivered degraded or dead-lettered with a reason', () => {
  let pipeline: Pipeline;
  let main: WebhookReceiver;
  let hostile: WebhookReceiver;
  let fanout: WebhookReceiver[];
  let refusing: { url: string; server: Server };

  before(async () => {
    main = await startWebhookReceiver({ secret: SECRET });
    hostile = await startWebhookReceiver({ secret: SECRET });
    fanout = await Promise.all(Array.from({ length: 6 }, () => startWebhookReceiver({ secret: SECRET })));
    refusing = await refusingEndpoint();
    pipeline = await startPipeline({
      routes: [
        route('main', 'user*@example.test', [main.url]),
        route('hostile', 'hostile@example.test', [hostile.url]),
        route(
          'fanout',
          'fanout@example.test',
          fanout.map((receiver) => receiver.url),
        ),
        route('refusing', 'refused@example.test', [refusing.url]),
      ],
      batchingWindowMs: 1000,
      concurrency: 1,
    });
  });

  after(async () => {
    await pipeline.close();
    await Promise.all([main, hostile, ...fanout].map((receiver) => receiver.close()));
    refusing.server.closeAllConnections();
    refusing.server.close();
  });

  it('a Date in the year 10000 becomes null with a warning', async () => {
    const raw = ordinary(0)
      .raw.toString()
      .replace('Mon, 15 Jan 2024', 'Mon, 1 Jan 10000')
      .replace(/user0/g, 'hostile');
    const events = await sendBatch(pipeline, { raw, rcptTo: ['hostile@example.test'] });
    const payload = await payloadOf(hostile, events[0]!.id);
    assert.equal(payload.message.date, null);
    assert.deepEqual(
      payload.warnings.filter((warning) => warning.startsWith('invalid_date')),
      ['invalid_date: Date header "Mon, 1 Jan 10000 10:00:00 +0000" is not a date in years 0000-9999'],
    );
    assert.equal(payload.message.subject, 'ordinary 0');
    await assertNineDeliveredOnce(main, events);
  });

  it('6 MiB of control characters: text capped, marked truncated, the raw link whole', async () => {
    const message = controlBytes(6 * 1024 * 1024, 'hostile@example.test');
    const events = await sendBatch(pipeline, message);
    const entry = await until(
      'the capped webhook',
      async () => hostile.received.find((candidate) => candidate.payload.id === events[0]!.id),
      WAIT_MS,
    );
    const payload = entry.payload as WebhookPayload;
    assert.deepEqual(payload.message.truncated, { text: true });
    assert.ok(Buffer.byteLength(JSON.stringify(payload.message.text)) <= 2 * 1024 * 1024);
    assert.ok(Buffer.byteLength(entry.body) < 5 * 1024 * 1024, `${Buffer.byteLength(entry.body)} bytes`);
    assert.equal(payload.raw.size, message.raw.length);
    const raw = Buffer.from(await (await fetch(payload.raw.url)).arrayBuffer());
    assert.ok(raw.equals(Buffer.from(message.raw)), 'the raw link has the whole message');
    await assertNineDeliveredOnce(main, events);
  });

  it('990 attachments to a route with 6 endpoints: every endpoint gets it, every link downloads', async () => {
    const events = await sendBatch(pipeline, manyAttachments(990, 'fanout@example.test'));
    for (const receiver of fanout) {
      const payload = await payloadOf(receiver, events[0]!.id);
      assert.equal(payload.message.attachments.length, 990);
      assert.deepEqual(payload.warnings, []);
    }
    const { attachments } = (await payloadOf(fanout[0]!, events[0]!.id)).message;
    for (const index of [0, 989]) {
      const attachment = attachments[index]!;
      assert.ok('url' in attachment);
      assert.equal(await (await fetch(attachment.url)).text(), `file ${index}`);
    }
    await assertNineDeliveredOnce(main, events);
  });

  it('recipients that no longer route: dead-lettered on the inbound DLQ as unrouted', async () => {
    const events = await sendBatch(pipeline, { ...ordinary(0), rcptTo: ['former@example.test'] });
    const entry = await deadLetterOf<InboundEvent & { reason: string; lastError: string }>(
      pipeline,
      pipeline.emulator.resources.inboundDlqUrl,
      events[0]!.id,
    );
    assert.equal(entry.reason, 'unrouted');
    assert.deepEqual(entry.envelope.rcptTo, ['former@example.test']);
    assert.deepEqual(entry.raw, events[0]!.raw);
    await assertNineDeliveredOnce(main, events);
  });

  it('an endpoint error body with U+FFFF: the job reaches the delivery DLQ with it', async () => {
    const events = await sendBatch(pipeline, { ...ordinary(0), rcptTo: ['refused@example.test'] });
    const entry = await deadLetterOf<DeadLetterEntry>(
      pipeline,
      pipeline.emulator.resources.deliveryDlqUrl,
      events[0]!.id,
    );
    assert.equal(entry.reason, 'permanent');
    assert.equal(entry.lastStatus, 400);
    assert.equal(entry.lastError, 'HTTP 400: bad \uffff input');
    await assertNineDeliveredOnce(main, events);
  });
});

/** A DNS server on 127.0.0.1 that reads every query and never answers. */
async function silentDnsServer(): Promise<{ address: string; socket: Socket }> {
  const socket = createSocket('udp4');
  socket.on('message', () => {});
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { address: `127.0.0.1:${socket.address().port}`, socket };
}

/** `message` signed by `count` DKIM signatures, each of its own domain. */
async function signedByMany(message: string, count: number): Promise<string> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const signatureData = Array.from({ length: count }, (_, i) => ({
    signingDomain: `d${i}.sender.test`,
    selector: 's1',
    privateKey: key,
  }));
  // mailauth's types want the keys at the top level, but the signer only reads `signatureData`.
  const result = await dkimSign(message, { ...signatureData[0]!, signatureData } as DKIMSignOptions);
  return result.signatures + message;
}

describe('a DNS server that never answers and 25 DKIM signatures, in a batch of ten', () => {
  let pipeline: Pipeline;
  let main: WebhookReceiver;
  let hostile: WebhookReceiver;
  let dns: { address: string; socket: Socket };

  before(async () => {
    main = await startWebhookReceiver({ secret: SECRET });
    hostile = await startWebhookReceiver({ secret: SECRET });
    dns = await silentDnsServer();
    pipeline = await startPipeline({
      routes: [
        route('main', 'user*@example.test', [main.url]),
        route('hostile', 'hostile@example.test', [hostile.url]),
      ],
      resolver: systemResolver({ servers: [dns.address] }),
      batchingWindowMs: 1000,
      concurrency: 1,
    });
  });

  after(async () => {
    await pipeline.close();
    await main.close();
    await hostile.close();
    dns.socket.close();
  });

  it('authentication stops at its deadline: temperror verdicts, the batch-mates delivered once', async () => {
    const raw = await signedByMany(
      'From: <many@sender.test>\r\nTo: hostile@example.test\r\nSubject: signed 25 times\r\n\r\nbody\r\n',
      25,
    );
    const events = await sendBatch(pipeline, { raw, rcptTo: ['hostile@example.test'] });
    const payload = await payloadOf(hostile, events[0]!.id);
    assert.equal(payload.auth.dkim.length, 25);
    assert.ok(payload.auth.dkim.every((row) => row.result === 'temperror'));
    assert.equal(payload.auth.spf.result, 'temperror');
    assert.ok(
      payload.warnings.some((warning) =>
        /^auth_limited: 15 DKIM\/ARC key lookup\(s\) beyond the 10 made/.test(warning),
      ),
      payload.warnings.join('\n'),
    );
    await assertNineDeliveredOnce(main, events);
  });
});
