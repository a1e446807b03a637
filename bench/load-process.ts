/**
 * The load generator, in a process of its own (`fork`): SMTP loads against a server under test,
 * the storage floor (PutObject + SendMessage without SMTP), and the end-to-end run with its
 * webhook receiver. The parent drives it through `serve` calls.
 */
import { createServer, type Server } from 'node:http';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { serve } from './ipc.ts';
import { envelopeGroup, messageBody, now, SmtpSession } from './smtp-client.ts';

const HOST = '127.0.0.1';
const RECIPIENT = 'load@example.test';

/** Outcome of a throughput run. */
export interface LoadResult {
  readonly messages: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly errors: number;
  readonly firstError?: string;
}

export interface SmtpLoad {
  readonly port: number;
  readonly size: number;
  readonly sessions: number;
  /** Keep each connection for many messages, or one connection per message. */
  readonly reuse: boolean;
  readonly starttls?: boolean;
  readonly durationMs: number;
}

/** Runs `sessions` loops until the deadline; a loop's message in progress is finished and counted. */
async function runLoops(
  sessions: number,
  durationMs: number,
  once: (loop: number) => Promise<number>,
  prepare: (loop: number) => Promise<void> = async () => {},
): Promise<LoadResult> {
  await Promise.all(Array.from({ length: sessions }, (_, loop) => prepare(loop)));
  let messages = 0;
  let bytes = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = now();
  const deadline = started + durationMs;
  let last = started;
  await Promise.all(
    Array.from({ length: sessions }, async (_, loop) => {
      while (now() < deadline) {
        try {
          const sent = await once(loop);
          bytes += sent;
          messages++;
          last = now();
        } catch (error) {
          errors++;
          firstError ??= (error as Error).message;
          // A refused or broken session: back off a little instead of spinning on it.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    }),
  );
  return { messages, bytes, seconds: (last - started) / 1000, errors, ...(firstError ? { firstError } : {}) };
}

async function smtp(load: SmtpLoad): Promise<LoadResult> {
  const envelope = envelopeGroup(RECIPIENT);
  const body = messageBody(load.size, 'bench', RECIPIENT);
  const open = () => SmtpSession.open({ host: HOST, port: load.port, starttls: load.starttls ?? false });
  if (!load.reuse) {
    return runLoops(load.sessions, load.durationMs, async () => {
      const session = await open();
      try {
        await session.send(envelope, body);
      } finally {
        await session.quit();
      }
      return body.length;
    });
  }
  const pool: (SmtpSession | undefined)[] = [];
  try {
    return await runLoops(
      load.sessions,
      load.durationMs,
      async (loop) => {
        pool[loop] ??= await open();
        try {
          await pool[loop].send(envelope, body);
        } catch (error) {
          pool[loop].close();
          pool[loop] = undefined;
          throw error;
        }
        return body.length;
      },
      async (loop) => {
        pool[loop] = await open();
      },
    );
  } finally {
    await Promise.all(pool.map((session) => session?.quit()));
  }
}

let idle: SmtpSession[] = [];

/** Opens `sessions` connections that stop after EHLO and stay open. */
async function openIdle(args: { port: number; sessions: number }): Promise<number> {
  for (let at = 0; at < args.sessions; at += 100) {
    const batch = Math.min(100, args.sessions - at);
    idle.push(
      ...(await Promise.all(
        Array.from({ length: batch }, () => SmtpSession.open({ host: HOST, port: args.port })),
      )),
    );
  }
  return idle.length;
}

async function closeIdle(): Promise<void> {
  await Promise.all(idle.map((session) => session.quit()));
  idle = [];
}

/** Every session connects first, then all send one message of `size` at the same moment. */
async function burst(args: { port: number; sessions: number; size: number }): Promise<LoadResult> {
  const envelope = envelopeGroup(RECIPIENT);
  const body = messageBody(args.size, 'burst', RECIPIENT);
  const sessions = await Promise.all(
    Array.from({ length: args.sessions }, () => SmtpSession.open({ host: HOST, port: args.port })),
  );
  const started = now();
  const results = await Promise.allSettled(sessions.map((session) => session.send(envelope, body)));
  const seconds = (now() - started) / 1000;
  await Promise.all(sessions.map((session) => session.quit()));
  const failed = results.find((result) => result.status === 'rejected');
  return {
    messages: results.filter((result) => result.status === 'fulfilled').length,
    bytes: body.length * args.sessions,
    seconds,
    errors: results.length - results.filter((result) => result.status === 'fulfilled').length,
    ...(failed ? { firstError: String(failed.reason) } : {}),
  };
}

export interface StorageTarget {
  readonly endpoint: string;
  readonly bucket: string;
  readonly queueUrl: string;
}

function clients(endpoint: string) {
  const common = {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  };
  return { s3: new S3Client({ ...common, forcePathStyle: true }), sqs: new SQSClient(common) };
}

/** The storage floor: per message one PutObject and one SendMessage, no SMTP, same size and concurrency. */
async function floor(args: StorageTarget & { size: number; concurrency: number; durationMs: number }) {
  const { s3, sqs } = clients(args.endpoint);
  const body = messageBody(args.size, 'floor', RECIPIENT);
  let n = 0;
  try {
    return await runLoops(args.concurrency, args.durationMs, async () => {
      const key = `floor/${process.pid}-${n++}.eml`;
      await s3.send(new PutObjectCommand({ Bucket: args.bucket, Key: key, Body: body }));
      await sqs.send(
        new SendMessageCommand({ QueueUrl: args.queueUrl, MessageBody: JSON.stringify({ key }) }),
      );
      return body.length;
    });
  } finally {
    s3.destroy();
    sqs.destroy();
  }
}

/** The emulator alone: PutObject/s (2 KB) and SendMessage/s, each at `concurrency`. */
async function emulatorFloor(args: StorageTarget & { concurrency: number; durationMs: number }) {
  const { s3, sqs } = clients(args.endpoint);
  const body = messageBody(2048, 'floor', RECIPIENT);
  let n = 0;
  try {
    const put = await runLoops(args.concurrency, args.durationMs, async () => {
      await s3.send(new PutObjectCommand({ Bucket: args.bucket, Key: `emu/${n++}`, Body: body }));
      return body.length;
    });
    const send = await runLoops(args.concurrency, args.durationMs, async () => {
      await sqs.send(new SendMessageCommand({ QueueUrl: args.queueUrl, MessageBody: '{"bench":true}' }));
      return 0;
    });
    return { putObject: put, sendMessage: send };
  } finally {
    s3.destroy();
    sqs.destroy();
  }
}

// End to end: the webhook receiver lives here, so send and receive times come from one clock.
let receiver: Server | undefined;
const sentAt = new Map<string, number>();
const deliveredAt = new Map<string, number>();
let failRate = 0;
let tries = 0;
let onDelivered: () => void = () => {};

async function startReceiver(): Promise<string> {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      tries++;
      if (Math.random() < failRate) {
        response.writeHead(503).end();
        return;
      }
      const at = now();
      const subject = (JSON.parse(Buffer.concat(chunks).toString()) as { message: { subject: string } })
        .message.subject;
      if (!deliveredAt.has(subject)) deliveredAt.set(subject, at);
      response.writeHead(204).end();
      onDelivered();
    });
  });
  receiver.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => receiver?.listen(0, HOST, resolve));
  const address = receiver.address();
  if (!address || typeof address === 'string') throw new Error('receiver has no address');
  return `http://${HOST}:${address.port}/hook`;
}

/**
 * Sends `count` messages over `sessions` reused connections, message n at `n / rate` seconds (a
 * steady offered load, so the figure is latency rather than the queue of a saturated pipeline);
 * waits for each webhook (or the timeout).
 */
async function endToEnd(args: {
  port: number;
  sessions: number;
  count: number;
  rate: number;
  size: number;
  failRate: number;
  timeoutMs: number;
}) {
  failRate = args.failRate;
  tries = 0;
  sentAt.clear();
  deliveredAt.clear();
  const envelope = envelopeGroup(RECIPIENT);
  const sessions = await Promise.all(
    Array.from({ length: args.sessions }, () => SmtpSession.open({ host: HOST, port: args.port })),
  );
  let next = 0;
  let errors = 0;
  const started = now();
  await Promise.all(
    sessions.map(async (session) => {
      while (next < args.count) {
        const n = next++;
        const wait = started + (n * 1000) / args.rate - now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const subject = `e2e-${process.pid}-${n}`;
        try {
          const sent = await session.send(envelope, messageBody(args.size, subject, RECIPIENT));
          sentAt.set(subject, sent.lastByteAt);
        } catch {
          errors++;
        }
      }
    }),
  );
  const sendSeconds = (now() - started) / 1000;
  await Promise.all(sessions.map((session) => session.quit()));
  const all = new Promise<void>((resolve) => {
    onDelivered = () => {
      if (deliveredAt.size >= sentAt.size) resolve();
    };
    onDelivered();
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, args.timeoutMs)))]);
  clearTimeout(timer);
  const latencies = [...sentAt].flatMap(([subject, at]) => {
    const delivered = deliveredAt.get(subject);
    return delivered === undefined ? [] : [delivered - at];
  });
  return { latencies, sent: sentAt.size, delivered: latencies.length, errors, tries, sendSeconds };
}

async function stopReceiver(): Promise<void> {
  if (!receiver) return;
  receiver.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
  receiver = undefined;
}

serve({
  smtp,
  openIdle,
  closeIdle,
  burst,
  floor,
  emulatorFloor,
  startReceiver,
  endToEnd,
  stopReceiver,
});
