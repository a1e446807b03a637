import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import nodemailer from 'nodemailer';
import { decodeTime } from 'ulid';
import { payloadKey, rawObjectKey, webhookId } from '../core/index.ts';
import type { DeadLetterEntry } from '../functions/index.ts';
import type { AwsOperation } from './fault-proxy.ts';
import { startPipeline } from './pipeline.ts';
import { startWebhookReceiver, type WebhookReceiver } from './webhook-receiver.ts';

// The soak (issue 6): N senders push M messages of mixed sizes through the whole pipeline on
// 127.0.0.1 while S3 and SQS fail a share of calls, the endpoints fail a share of tries and the
// listener is restarted; then every message is reconciled. Run short by test/e2e/soak-quick.test.ts
// and long by `npm run soak` (bench/soak.ts).

export interface SoakOptions {
  /** Messages to send (each may take several attempts). @default 10000 */
  readonly messages?: number;
  /** Concurrent SMTP senders. @default 20 */
  readonly senders?: number;
  /** Listener restarts, spread over the run. @default 2 */
  readonly restarts?: number;
  /** Share of S3 and SQS calls that fail (500, 503 or reset). @default 0.05 */
  readonly storageFailRate?: number;
  /** Share of webhook tries that fail (500, late answer, reset). @default 0.3 */
  readonly endpointFailRate?: number;
  /** Largest message; sizes are mixed from 1 KB up to it. @default 2 MiB */
  readonly maxMessageBytes?: number;
  /** Whole-run bound: reconciliation happens by then, whatever is still pending counts as lost. @default 30 min */
  readonly timeLimitMs?: number;
  /** Progress lines. @default none */
  readonly log?: (line: string) => void;
}

export interface SoakResult {
  readonly messages: number;
  /** SMTP transactions tried, retries included. */
  readonly attempts: number;
  /** Attempts answered 250. */
  readonly accepted: number;
  /** Attempts answered otherwise (4xx, a cut connection during a restart, …). */
  readonly refused: number;
  /** Messages given up after every attempt was refused. */
  readonly abandoned: number;
  /** Expected (accepted message, route) deliveries. */
  readonly expected: number;
  /** … of those, received by the endpoint (distinct webhook-ids). */
  readonly delivered: number;
  /** … of those, in the delivery DLQ with a reason. */
  readonly deadLettered: number;
  /** … of those, whose message is in the inbound DLQ (parse failed on every receive). */
  readonly parseDeadLettered: number;
  /** Repeats of an already received webhook-id (at-least-once, deduped by receivers). */
  readonly repeats: number;
  /** Expected deliveries neither received nor dead-lettered. */
  readonly lost: number;
  /** Up to 10 lost deliveries, with how far their message got (raw object, payload object). */
  readonly lostSample: readonly {
    soakId: string;
    messageId: string;
    route: string;
    raw: boolean;
    payload: boolean;
  }[];
  /** Webhooks for attempts that were not answered 250, or with an unexpected webhook-id. */
  readonly unexpected: number;
  /** Webhooks whose signature did not verify. */
  readonly badSignatures: number;
  readonly storageFaults: number;
  readonly endpointTries: number;
  readonly restarts: number;
  readonly durationMs: number;
  readonly ok: boolean;
}

const SECRETS = { main: 'whsec_c29hay1tYWluLXNlY3JldA==', copy: 'whsec_c29hay1jb3B5LXNlY3JldA==' };
const FAULTED_OPS: AwsOperation[] = [
  'S3.PutObject',
  'S3.CreateMultipartUpload',
  'S3.UploadPart',
  'S3.CompleteMultipartUpload',
  'S3.GetObject',
  'SQS.SendMessage',
  'SQS.SendMessageBatch',
  'SQS.ReceiveMessage',
  'SQS.DeleteMessageBatch',
  'SQS.ChangeMessageVisibility',
];

/** Mostly small, a tail of large ones: 70% to 10 KB, 20% to 100 KB, 8% to 500 KB, 2% to the max. */
function pickSize(max: number): number {
  const roll = Math.random();
  const [low, high] =
    roll < 0.7
      ? [1024, 10_240]
      : roll < 0.9
        ? [10_240, 102_400]
        : roll < 0.98
          ? [102_400, 512_000]
          : [512_000, max];
  return Math.floor(low + Math.random() * (Math.min(high, max) - low));
}

/** One SMTP transaction as the soak recorded it. */
interface Attempt {
  readonly soakId: string;
  readonly routes: readonly ('main' | 'copy')[];
  queuedAs?: string;
}

export async function runSoak(options: SoakOptions = {}): Promise<SoakResult> {
  const messages = options.messages ?? 10_000;
  const senders = options.senders ?? 20;
  const restarts = options.restarts ?? 2;
  const maxBytes = options.maxMessageBytes ?? 2 * 1024 * 1024;
  const log = options.log ?? (() => {});
  const started = Date.now();
  const deadline = started + (options.timeLimitMs ?? 30 * 60_000);
  const dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-soak-'));
  const summarize = (payload: Record<string, unknown>) => {
    const message = payload.message as { headers: { name: string; value: string }[] };
    const header = message.headers.find((entry) => entry.name.toLowerCase() === 'x-soak-id');
    return { id: payload.id, route: (payload.route as { id: string }).id, soakId: header?.value.trim() };
  };
  const failRate = options.endpointFailRate ?? 0.3;
  const receivers: Record<'main' | 'copy', WebhookReceiver> = {
    main: await startWebhookReceiver({ secret: SECRETS.main, failRate, holdMs: 1500, summarize }),
    copy: await startWebhookReceiver({ secret: SECRETS.copy, failRate, holdMs: 1500, summarize }),
  };
  // Tries 1 s apart, 13 in all: at a 30% failure rate an exhausted schedule is a one-in-millions event.
  const retry = {
    retrySchedule: Array.from({ length: 12 }, () => 1),
    timeout: '1s',
    attachments: { mode: 'url' as const },
  };
  const pipeline = await startPipeline({
    domains: ['soak.test'],
    routes: [
      {
        id: 'main',
        match: ['*@soak.test'],
        endpoints: [receivers.main.url],
        secret: { value: SECRETS.main },
        ...retry,
      },
      {
        id: 'copy',
        match: ['copy@soak.test'],
        endpoints: [receivers.copy.url],
        secret: { value: SECRETS.copy },
        ...retry,
      },
    ],
    limits: {
      closeTimeout: '3s',
      maxConnectionsPerIp: senders * 2,
      maxConnectionsPerNetwork: senders * 2,
      maxMessageBytes: maxBytes * 2,
    },
    dataDir,
    concurrency: 4,
  });
  const storageFailRate = options.storageFailRate ?? 0.05;
  for (const action of [
    { kind: 'fail', status: 500 },
    { kind: 'fail', status: 503 },
    { kind: 'drop' },
  ] as const) {
    pipeline.proxy.add({ ops: FAULTED_OPS, action, rate: storageFailRate / 3 });
  }

  const attempts: Attempt[] = [];
  let abandoned = 0;
  let next = 0;
  let restartsDone = 0;
  let restarting: Promise<void> | undefined;
  const restartAt = Array.from({ length: restarts }, (_, index) =>
    Math.floor((messages * (index + 1)) / (restarts + 1)),
  );

  const sender = async (index: number) => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: pipeline.smtpPort,
      secure: false,
      pool: true,
      maxConnections: 1,
      maxMessages: Number.POSITIVE_INFINITY,
      tls: { rejectUnauthorized: false },
      socketTimeout: 60_000,
    });
    try {
      while (next < messages && Date.now() < deadline) {
        const n = next++;
        if (restartAt.includes(n)) {
          restarting = (async () => {
            log(`restarting the listener at message ${n}`);
            await pipeline.stopListener();
            await sleep(200);
            await pipeline.startListener();
            restartsDone++;
          })();
        }
        const size = pickSize(maxBytes);
        const withAttachment = Math.random() < 0.25;
        const copy = Math.random() < 0.2;
        const routes = copy ? (['main', 'copy'] as const) : (['main'] as const);
        let accepted = false;
        for (let attempt = 1; attempt <= 5 && !accepted; attempt++) {
          const soakId = `s${n}-a${attempt}`;
          const record: Attempt = { soakId, routes };
          attempts.push(record);
          const bodyBytes = withAttachment ? Math.floor(size / 4) : size;
          try {
            const info = await transport.sendMail({
              from: `sender${index}@sender.test`,
              to: `user${n % 97}+${soakId}@soak.test`,
              ...(copy ? { cc: 'copy@soak.test' } : {}),
              subject: `soak ${soakId}`,
              headers: { 'X-Soak-Id': soakId },
              text: `${soakId}\n${'soak body line of text, 64 characters long, to pad out messages\n'.repeat(Math.ceil(bodyBytes / 64))}`,
              ...(withAttachment
                ? {
                    attachments: [
                      { filename: `${soakId}.bin`, content: randomBytes(Math.floor((size * 3) / 4 / 1.37)) },
                    ],
                  }
                : {}),
            });
            const queued = /queued as ([0-9A-Z]{26})/.exec(info.response)?.[1];
            if (queued) {
              record.queuedAs = queued;
              accepted = true;
            }
          } catch {
            await (restarting ?? sleep(100));
            await sleep(100);
          }
        }
        if (!accepted) abandoned++;
        if (n % 1000 === 999)
          log(`${n + 1} messages sent (${attempts.length} attempts) at ${Date.now() - started} ms`);
      }
    } finally {
      transport.close();
    }
  };
  await Promise.all(Array.from({ length: senders }, (_, index) => sender(index)));
  await restarting;

  // Wait until every expected delivery arrived or was dead-lettered, or the time is up.
  const deadLetters = new Map<string, DeadLetterEntry>();
  const parseDeadLetters = new Set<string>();
  const accepted = attempts.filter((attempt) => attempt.queuedAs);
  const expected = accepted.flatMap((attempt) =>
    attempt.routes.map((route) => ({ attempt, route, id: webhookId(attempt.queuedAs!, route) })),
  );
  const settled = (entry: (typeof expected)[number]) =>
    receivers[entry.route].unique.has(entry.id) ||
    deadLetters.has(entry.id) ||
    parseDeadLetters.has(entry.attempt.queuedAs!);
  const readQueue = async (queueUrl: string, take: (body: string) => void) => {
    for (;;) {
      const batch = await pipeline.emulator.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 0,
          VisibilityTimeout: 3600,
        }),
      );
      if (!batch.Messages?.length) return;
      for (const message of batch.Messages) take(message.Body!);
    }
  };
  const { deliveryDlqUrl, inboundDlqUrl } = pipeline.emulator.resources;
  let pending = expected.length;
  let stalledSince = Date.now();
  while (Date.now() < deadline) {
    await readQueue(deliveryDlqUrl, (body) => {
      const entry = JSON.parse(body) as DeadLetterEntry;
      deadLetters.set(entry.webhookId, entry);
    });
    await readQueue(inboundDlqUrl, (body) => parseDeadLetters.add((JSON.parse(body) as { id: string }).id));
    const left = expected.filter((entry) => !settled(entry)).length;
    if (left === 0) break;
    if (left < pending) stalledSince = Date.now();
    // Retries come at most seconds apart: two quiet minutes mean nothing more is coming.
    if (Date.now() - stalledSince > 120_000) break;
    pending = left;
    log(`waiting for ${pending} deliveries at ${Date.now() - started} ms`);
    await sleep(2000);
  }
  // Webhooks that arrive late would be unexpected too: give stragglers a moment before counting.
  await sleep(1500);

  const attemptById = new Map(attempts.map((attempt) => [attempt.soakId, attempt]));
  const expectedIds = new Set(expected.map((entry) => entry.id));
  let unexpected = 0;
  let repeats = 0;
  for (const receiver of Object.values(receivers)) {
    repeats += receiver.received.length - receiver.unique.size;
    for (const entry of receiver.unique.values()) {
      const soakId = entry.payload.soakId as string | undefined;
      const attempt = soakId ? attemptById.get(soakId) : undefined;
      if (!attempt?.queuedAs || !expectedIds.has(entry.webhookId)) unexpected++;
    }
  }
  const delivered = expected.filter((entry) => receivers[entry.route].unique.has(entry.id)).length;
  const undelivered = expected.filter((entry) => !receivers[entry.route].unique.has(entry.id));
  const deadLettered = undelivered.filter((entry) => deadLetters.has(entry.id)).length;
  const parseDeadLettered = undelivered.filter(
    (entry) => !deadLetters.has(entry.id) && parseDeadLetters.has(entry.attempt.queuedAs!),
  ).length;
  const lost = expected.length - delivered - deadLettered - parseDeadLettered;
  const exists = async (key: string) => {
    const listed = await pipeline.emulator.s3.send(
      new ListObjectsV2Command({ Bucket: pipeline.emulator.resources.bucket, Prefix: key, MaxKeys: 1 }),
    );
    return (listed.KeyCount ?? 0) > 0;
  };
  const lostSample = await Promise.all(
    undelivered
      .filter((entry) => !deadLetters.has(entry.id) && !parseDeadLetters.has(entry.attempt.queuedAs!))
      .slice(0, 10)
      .map(async ({ attempt, route }) => {
        const messageId = attempt.queuedAs!;
        return {
          soakId: attempt.soakId,
          messageId,
          route,
          raw: await exists(rawObjectKey(messageId, new Date(decodeTime(messageId)))),
          payload: await exists(payloadKey(messageId, route)),
        };
      }),
  );
  const storageFaults = [...pipeline.proxy.faults.values()].reduce((sum, count) => sum + count, 0);
  const endpointTries = receivers.main.tries + receivers.copy.tries;
  const badSignatures = receivers.main.invalid + receivers.copy.invalid;

  await pipeline.close();
  await receivers.main.close();
  await receivers.copy.close();
  await rm(dataDir, { recursive: true, force: true });
  return {
    messages,
    attempts: attempts.length,
    accepted: accepted.length,
    refused: attempts.length - accepted.length,
    abandoned,
    expected: expected.length,
    delivered,
    deadLettered,
    parseDeadLettered,
    repeats,
    lost,
    lostSample,
    unexpected,
    badSignatures,
    storageFaults,
    endpointTries,
    restarts: restartsDone,
    durationMs: Date.now() - started,
    ok:
      lost === 0 &&
      parseDeadLettered === 0 &&
      unexpected === 0 &&
      badSignatures === 0 &&
      restartsDone === restarts,
  };
}
