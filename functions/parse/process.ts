import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import {
  type Config,
  DEDUPE_PREFIX,
  type DeliveryJob,
  DeliveryJobSchema,
  type InboundEvent,
  type Logger,
  type Metrics,
  MetricUnit,
  type Presign,
  parseAddress,
  type Route,
  type Router,
  type WebhookAttachment,
  type WebhookAuth,
  type WebhookPayload,
  WebhookPayloadSchema,
  webhookId,
} from '../../core/index.ts';
import { type StoredAttachment, s3AttachmentSink } from './attachments.ts';
import { AUTH_UNAVAILABLE, authenticateMessage } from './auth.ts';
import type { DnsResolver } from './dns.ts';
import { Measure } from './measure.ts';
import { readMessageExtras, s3ExtrasPorts } from './message-extras.ts';
import { type MimeResult, parseMime } from './mime.ts';

/** What {@link processInboundEvent} works with; built once per function instance. */
export interface ProcessDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly bucket: string;
  readonly deliveryQueueUrl: string;
  readonly config: Config;
  readonly router: Router;
  readonly resolver: DnsResolver;
  readonly presign: Presign;
  /** Logs about this message; every line carries its `messageId`. */
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** Where the payload of one (message, route) is stored for the deliver function. */
export function payloadKey(messageId: string, routeId: string): string {
  return `payloads/${messageId}/${routeId}.json`;
}

interface ReadMessage {
  readonly size: number;
  readonly sha256: string;
  readonly contentSha256: string;
  readonly bareLf: boolean;
  readonly auth: WebhookAuth;
  readonly mime: MimeResult<StoredAttachment>;
  readonly authError?: Error;
}

/**
 * One pass over the raw object: measured (size, SHA-256, bare LF), authenticated and parsed at once
 * through a tee, so the message is read from S3 once and never held whole.
 */
async function readMessage(event: InboundEvent, deps: ProcessDeps, keepUpTo: number): Promise<ReadMessage> {
  const object = await deps.s3.send(new GetObjectCommand({ Bucket: event.raw.bucket, Key: event.raw.key }));
  const body = object.Body as Readable;
  const measure = new Measure();
  const forAuth = new PassThrough();
  const forMime = new PassThrough();
  body.once('error', (error) => measure.destroy(error));
  measure.once('error', (error) => {
    forAuth.destroy(error);
    forMime.destroy(error);
  });
  body.pipe(measure);
  measure.pipe(forAuth);
  measure.pipe(forMime);

  const { envelope } = event;
  const auth = authenticateMessage(
    forAuth,
    {
      ip: envelope.remoteAddress,
      helo: envelope.helo,
      mailFrom: envelope.mailFrom,
      mta: deps.config.hostname,
    },
    deps.resolver,
  ).catch((error: Error) => {
    // Authentication gave up early: stop feeding it, so the parse pass is not held back.
    measure.unpipe(forAuth);
    forAuth.destroy();
    throw error;
  });
  const mime = parseMime(forMime, s3AttachmentSink(deps.s3, deps.bucket, event.id, keepUpTo));
  const [authOutcome, mimeOutcome, measured] = await Promise.allSettled([auth, mime, finished(measure)]);
  // A read error first: the MIME pass only reports it wrapped.
  if (measured.status === 'rejected') throw measured.reason;
  if (mimeOutcome.status === 'rejected') throw mimeOutcome.reason;
  return {
    size: measure.size,
    sha256: measure.sha256,
    contentSha256: measure.contentSha256,
    bareLf: measure.bareLf,
    mime: mimeOutcome.value,
    ...(authOutcome.status === 'fulfilled'
      ? { auth: authOutcome.value }
      : { auth: AUTH_UNAVAILABLE, authError: authOutcome.reason as Error }),
  };
}

/** Where the first message with a given content and envelope is recorded. */
function dedupeKey(contentSha256: string, envelope: InboundEvent['envelope']): string {
  const recipients = envelope.rcptTo.map((address) => address.toLowerCase()).sort();
  const digest = createHash('sha256')
    .update(JSON.stringify([contentSha256, envelope.mailFrom.toLowerCase(), recipients]))
    .digest('hex');
  return `${DEDUPE_PREFIX}${digest}`;
}

const isMissing = (error: unknown) => (error as Error).name === 'NoSuchKey';
const isTaken = (error: unknown) =>
  (error as Error).name === 'PreconditionFailed' ||
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412;

/**
 * The id of the first message stored with the same content (trace header left out) and envelope:
 * a sender that saw no `250` (a timeout, a cut connection) sends the message again, and both copies
 * get here. Recorded with a conditional put, so in S3 of two concurrent copies exactly one is
 * first (the local emulator ignores the condition: there, two copies parsed at the same instant may
 * both pass as first).
 */
async function firstMessageWith(key: string, id: string, deps: ProcessDeps): Promise<string> {
  const read = async () => {
    const object = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: key }));
    return object.Body!.transformToString();
  };
  try {
    return await read();
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
  try {
    await deps.s3.send(
      new PutObjectCommand({
        Bucket: deps.bucket,
        Key: key,
        Body: id,
        ContentType: 'text/plain',
        IfNoneMatch: '*',
      }),
    );
    return id;
  } catch (error) {
    if (!isTaken(error)) throw error;
    return read();
  }
}

function routeAttachments(
  stored: readonly StoredAttachment[],
  route: Route,
  urlOf: (index: number) => Promise<string>,
): Promise<WebhookAttachment[]> {
  return Promise.all(
    stored.map(async ({ key: _key, bytes, ...meta }, index) =>
      route.attachments.mode === 'inline' && bytes && meta.size <= route.attachments.inlineLimitBytes
        ? { ...meta, content: bytes.toString('base64') }
        : { ...meta, url: await urlOf(index) },
    ),
  );
}

async function sendJobs(deps: ProcessDeps, jobs: readonly DeliveryJob[]): Promise<void> {
  // SendMessageBatch takes at most 10 entries.
  for (let start = 0; start < jobs.length; start += 10) {
    const batch = jobs.slice(start, start + 10);
    const result = await deps.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: deps.deliveryQueueUrl,
        Entries: batch.map((job, index) => ({ Id: String(index), MessageBody: JSON.stringify(job) })),
      }),
    );
    if (result.Failed && result.Failed.length > 0) {
      const reasons = result.Failed.map((failure) => `${failure.Code}: ${failure.Message}`).join('; ');
      throw new Error(`sending ${result.Failed.length} delivery jobs failed: ${reasons}`);
    }
  }
}

/**
 * Turns one stored message into webhooks: authenticates and parses it, stores its attachments and
 * one payload per route at {@link payloadKey}, and queues one DeliveryJob per route endpoint.
 * Idempotent: a re-run writes the same keys and the same webhook ids. Broken MIME gives a degraded
 * payload (with the raw link and a warning), never an error; S3 and SQS failures throw, so the
 * record is retried.
 */
export async function processInboundEvent(event: InboundEvent, deps: ProcessDeps): Promise<DeliveryJob[]> {
  const { logger, metrics } = deps;
  const groups = deps.router.group(event.envelope.rcptTo);
  const routed = new Set(groups.flatMap((group) => group.recipients));
  const unrouted = event.envelope.rcptTo.filter((recipient) => !routed.has(recipient));
  if (unrouted.length > 0) {
    logger.warn('recipients no longer route anywhere; no delivery for them', { recipients: unrouted });
    metrics.addMetric('unrouted_recipients', MetricUnit.Count, unrouted.length);
  }
  if (groups.length === 0) return [];

  const keepUpTo = Math.max(
    0,
    ...groups.map(({ route }) =>
      route.attachments.mode === 'inline' ? route.attachments.inlineLimitBytes : 0,
    ),
  );
  const read = await readMessage(event, deps, keepUpTo);
  const warnings: string[] = [];
  if (read.size !== event.raw.size || read.sha256 !== event.raw.sha256) {
    logger.warn('raw object differs from the inbound event; using what was measured', {
      event: { size: event.raw.size, sha256: event.raw.sha256 },
      measured: { size: read.size, sha256: read.sha256 },
    });
    metrics.addMetric('raw_mismatch', MetricUnit.Count, 1);
  }
  try {
    const first = await firstMessageWith(dedupeKey(read.contentSha256, event.envelope), event.id, deps);
    if (first !== event.id) {
      warnings.push(`duplicate: same content and envelope as message ${first}`);
      logger.warn('a copy of an earlier message; marked as a duplicate', { duplicateOf: first });
      metrics.addMetric('duplicates', MetricUnit.Count, 1);
    }
  } catch (error) {
    // Marking duplicates helps receivers; it must never hold a message back.
    logger.warn('duplicate check failed; delivering unmarked', { error: error as Error });
  }
  if (read.bareLf || event.bareLf) warnings.push('bare_lf: lines end in LF without CR (RFC 5321 §2.3.8)');
  if (read.authError) {
    warnings.push(`auth_failed: ${read.authError.message}`);
    logger.error('sender authentication failed', { error: read.authError });
  }
  if (read.mime.error) {
    warnings.push(`mime_parse_failed: ${read.mime.error.message}`);
    logger.error('MIME parse failed; sending what could be read with the raw link', {
      error: read.mime.error,
    });
    metrics.addMetric('parse_errors', MetricUnit.Count, 1);
  }

  // Reply-by-email additions: flags, bounce, forward, unpacked winmail.dat/.msg, per-route reply text.
  const extras = await readMessageExtras(
    {
      fields: read.mime.fields,
      attachments: read.mime.attachments,
      mailFrom: event.envelope.mailFrom,
      routes: groups.map(({ route }) => route),
    },
    s3ExtrasPorts(
      deps.s3,
      deps.bucket,
      event.raw,
      s3AttachmentSink(deps.s3, deps.bucket, event.id, keepUpTo),
    ),
  );
  warnings.push(...extras.warnings);

  const stored = extras.attachments;
  // Presigned only for the routes that link rather than inline, and once per attachment.
  const urls = new Map<number, Promise<string>>();
  const urlOf = (index: number) => {
    if (!urls.has(index)) urls.set(index, deps.presign(deps.bucket, stored[index]!.key));
    return urls.get(index)!;
  };
  const rawUrl = await deps.presign(event.raw.bucket, event.raw.key);
  const { fields } = read.mime;

  const jobs: DeliveryJob[] = [];
  for (const { route, recipients } of groups) {
    const payload: WebhookPayload = WebhookPayloadSchema.parse({
      type: 'email.received',
      version: 1,
      id: event.id,
      receivedAt: event.receivedAt,
      route: { id: route.id, recipients, ...extras.route(recipients) },
      envelope: {
        mailFrom: event.envelope.mailFrom,
        rcptTo: recipients,
        helo: event.envelope.helo,
        remoteAddress: event.envelope.remoteAddress,
        tls: event.envelope.tls,
      },
      message: {
        ...fields,
        mailboxHash: parseAddress(recipients[0]!)?.mailboxHash ?? null,
        attachments: await routeAttachments(stored, route, urlOf),
        ...extras.message(route),
      },
      auth: read.auth,
      raw: { size: read.size, sha256: read.sha256, url: rawUrl },
      warnings,
    } satisfies WebhookPayload);
    const key = payloadKey(event.id, route.id);
    await deps.s3.send(
      new PutObjectCommand({
        Bucket: deps.bucket,
        Key: key,
        Body: JSON.stringify(payload),
        ContentType: 'application/json',
      }),
    );
    // In the job rather than a sidecar object: deliver reads no extra object per try, and the
    // message grows by one key per linked attachment, far from the SQS limit.
    const links = {
      raw: { bucket: event.raw.bucket, key: event.raw.key },
      attachments: payload.message.attachments.flatMap((attachment, index) =>
        'url' in attachment ? [{ index, bucket: deps.bucket, key: stored[index]!.key }] : [],
      ),
    };
    for (const endpoint of route.endpoints) {
      jobs.push(
        DeliveryJobSchema.parse({
          version: 1,
          messageId: event.id,
          routeId: route.id,
          endpoint,
          recipients,
          payload: { bucket: deps.bucket, key },
          webhookId: webhookId(event.id, route.id),
          links,
        }),
      );
    }
  }
  await sendJobs(deps, jobs);
  metrics.addMetric('messages_parsed', MetricUnit.Count, 1);
  metrics.addMetric('deliveries_queued', MetricUnit.Count, jobs.length);
  logger.info('message parsed and queued for delivery', {
    size: read.size,
    attachments: stored.length,
    routes: groups.map(({ route }) => route.id),
    jobs: jobs.length,
    warnings,
  });
  return jobs;
}
