import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import type { DuplicateMarkers } from '../../core/control/index.ts';
import { routeOutcome } from '../../core/filtering/index.ts';
import {
  type Config,
  capBodies,
  type DeliveryJob,
  type InboundDeadLetterEntry,
  type InboundEvent,
  inlinePayload,
  type JobPayload,
  jsonChunks,
  type Logger,
  type Metrics,
  MetricUnit,
  messageFingerprint,
  payloadKey,
  type RouteGroup,
  type Router,
  routeJobs,
  routePayload,
  sendBatch,
  sqsJson,
  type WebhookAuth,
  type WebhookPayload,
} from '../../core/index.ts';
import { type StoredAttachment, s3AttachmentSink } from './attachments.ts';
import { AUTH_LIMITS, AUTH_UNAVAILABLE, type AuthLimits, authenticateMessage } from './auth.ts';
import type { DnsResolver } from './dns.ts';
import { Measure } from './measure.ts';
import { readMessageExtras, s3ExtrasPorts } from './message-extras.ts';
import { type MimeResult, parseMime } from './mime.ts';

/** What {@link processInboundEvent} works with; built once per function instance. */
export interface ProcessDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** Bucket for attachments and payloads (the raw object's bucket comes with each event). */
  readonly bucket: string;
  readonly deliveryQueueUrl: string;
  /** The inbound queue's DLQ: a message whose recipients no longer route goes there, as `unrouted`. */
  readonly inboundDlqUrl: string;
  readonly config: Config;
  readonly router: Router;
  readonly resolver: DnsResolver;
  /** Where the first message of each content and envelope is recorded. @default duplicates are not marked */
  readonly duplicates?: DuplicateMarkers;
  /** Deadline and key-lookup budget of each message's authentication. @default AUTH_LIMITS */
  readonly auth?: AuthLimits;
  /** Logs about this message; every line carries its `messageId`. */
  readonly logger: Logger;
  readonly metrics: Metrics;
  /**
   * Records that a route's copy is held back by its filtering policy (the message log's
   * `quarantined` event). @default none: the log line and the stored payload only
   */
  readonly quarantined?: (messageId: string, routeId: string, reasons: readonly string[]) => Promise<void>;
}

/** What parse made of one message: the jobs queued, and what the message log's `parsed` event tells. */
export interface ParseResult {
  readonly jobs: DeliveryJob[];
  /** Recipients dead-lettered as `unrouted`. */
  readonly unrouted: string[];
  /** Null when nothing routed, so the message was not read. */
  readonly subject: string | null;
  readonly from: string | null;
  readonly warnings: string[];
}

interface ReadMessage {
  readonly size: number;
  readonly sha256: string;
  readonly contentSha256: string;
  readonly bareLf: boolean;
  readonly auth: WebhookAuth;
  readonly authWarnings: readonly string[];
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
    deps.auth ?? AUTH_LIMITS,
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
      ? { auth: authOutcome.value.auth, authWarnings: authOutcome.value.warnings }
      : {
          auth: AUTH_UNAVAILABLE,
          authWarnings: [`auth_failed: ${(authOutcome.reason as Error).message}`],
          authError: authOutcome.reason as Error,
        }),
  };
}

/**
 * Where a route's jobs find the payload: inside them when it fits (see {@link inlinePayload}),
 * else stored at {@link payloadKey}.
 */
async function payloadFor(
  deps: ProcessDeps,
  group: RouteGroup,
  messageId: string,
  payload: WebhookPayload,
): Promise<JobPayload> {
  const inline = inlinePayload(group, messageId, payload);
  if (inline) return inline;
  const key = payloadKey(messageId, group.route.id);
  await storePayload(deps, key, payload);
  return { bucket: deps.bucket, key };
}

/** Streams a payload's JSON to S3 (multipart beyond one part), so it is never one string in memory. */
async function storePayload(deps: ProcessDeps, key: string, payload: WebhookPayload): Promise<void> {
  const body = Readable.from(
    (function* () {
      for (const chunk of jsonChunks(payload)) yield Buffer.from(chunk);
    })(),
  );
  await new Upload({
    client: deps.s3,
    queueSize: 1,
    params: { Bucket: deps.bucket, Key: key, Body: body, ContentType: 'application/json' },
  }).done();
}

/** Queues the jobs; those SQS does not take fail the record (a BatchSendError), so it is retried. */
function sendJobs(deps: ProcessDeps, jobs: readonly DeliveryJob[]): Promise<void> {
  return sendBatch(
    jobs.map(sqsJson),
    (body, Id) => ({ Id, MessageBody: body }),
    (Entries) => deps.sqs.send(new SendMessageBatchCommand({ QueueUrl: deps.deliveryQueueUrl, Entries })),
    { what: 'delivery jobs', bytes: (body) => Buffer.byteLength(body) },
  );
}

/**
 * Accepted mail whose recipients match no route now (the config changed between RCPT and parse):
 * the event, for those recipients only, goes to the inbound DLQ with reason `unrouted`, so nothing
 * the listener said 250 to disappears, and a redrive after the config is fixed parses it again.
 */
async function deadLetterUnrouted(event: InboundEvent, unrouted: string[], deps: ProcessDeps): Promise<void> {
  const entry: InboundDeadLetterEntry = {
    ...event,
    envelope: { ...event.envelope, rcptTo: unrouted },
    reason: 'unrouted',
    lastError: `no route matches ${unrouted.join(', ')} in the config in force at parse time`,
  };
  await deps.sqs.send(new SendMessageCommand({ QueueUrl: deps.inboundDlqUrl, MessageBody: sqsJson(entry) }));
  deps.metrics.addMetric('unrouted_recipients', MetricUnit.Count, unrouted.length);
  deps.logger.error('recipients no longer route anywhere: dead-lettered as unrouted', {
    recipients: unrouted,
  });
}

/**
 * Turns one stored message into webhooks: authenticates and parses it, builds one payload per
 * route (inside its jobs when they fit one SQS message, else stored at {@link payloadKey}), and
 * queues one DeliveryJob per route endpoint; recipients that route nowhere are dead-lettered (see
 * {@link deadLetterUnrouted}). An event with `onlyRoute` (a retry of one route) delivers to that
 * route only and dead-letters nothing. Idempotent: a re-run writes the same keys and the same webhook ids. What the sender
 * wrote never makes it fail: broken MIME, values the schema cannot carry, sizes over the caps give
 * a degraded payload (with the raw link and warnings). S3 and SQS failures throw, so the record is
 * retried. A route whose copy the listener quarantined (and that was not released) gets its
 * payload stored at {@link payloadKey} and no job: a release re-parses the message. Once `signal` aborts (the invocation is running out of time) nothing more is queued.
 */
export async function processInboundEvent(
  event: InboundEvent,
  deps: ProcessDeps,
  signal?: AbortSignal,
): Promise<ParseResult> {
  const all = deps.router.group(event.envelope.rcptTo);
  const routed = new Set(all.flatMap((group) => group.recipients));
  const groups = event.onlyRoute ? all.filter(({ route }) => route.id === event.onlyRoute) : all;
  const unrouted = event.envelope.rcptTo.filter((recipient) => !routed.has(recipient));
  const parsed =
    groups.length > 0
      ? await queueDeliveries(event, groups, deps, signal)
      : { jobs: [], subject: null, from: null, warnings: [] };
  // A retry of one route: the first parse dead-lettered these already (once is what the alarm counts).
  if (unrouted.length > 0 && !event.onlyRoute) {
    signal?.throwIfAborted();
    await deadLetterUnrouted(event, unrouted, deps);
  }
  return { ...parsed, unrouted };
}

async function queueDeliveries(
  event: InboundEvent,
  groups: RouteGroup[],
  deps: ProcessDeps,
  signal: AbortSignal | undefined,
): Promise<Omit<ParseResult, 'unrouted'>> {
  const { logger, metrics } = deps;
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
    const first = await deps.duplicates?.firstMessageWith(
      messageFingerprint(read.contentSha256, event.envelope),
      event.id,
    );
    if (first !== undefined && first !== event.id) {
      warnings.push(`duplicate: same content and envelope as message ${first}`);
      logger.warn('a copy of an earlier message; marked as a duplicate', { duplicateOf: first });
      metrics.addMetric('duplicates', MetricUnit.Count, 1);
    }
  } catch (error) {
    // Marking duplicates helps receivers; it must never hold a message back.
    logger.warn('duplicate check failed; delivering unmarked', { error: error as Error });
  }
  if (read.bareLf || event.bareLf) warnings.push('bare_lf: lines end in LF without CR (RFC 5321 §2.3.8)');
  warnings.push(...read.authWarnings, ...read.mime.warnings);
  if (read.authError) logger.error('sender authentication failed', { error: read.authError });
  if (read.mime.error) {
    warnings.push(`mime_parse_failed: ${read.mime.error.message}`);
    logger.error('MIME parse failed; sending what could be read with the raw link', {
      error: read.mime.error,
    });
    metrics.addMetric('parse_errors', MetricUnit.Count, 1);
  }

  const { text, html, ...fields } = read.mime.fields;
  const bodies = capBodies({ text, html });
  // Reply-by-email additions (flags, bounce, forward, unpacked winmail.dat/.msg, per-route reply
  // text), read from the capped bodies so that what is cut from them stays within the caps too.
  const extras = await readMessageExtras(
    {
      fields: { ...read.mime.fields, ...bodies },
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
  const jobs: DeliveryJob[] = [];
  for (const group of groups) {
    const { route, recipients } = group;
    const message = { ...fields, ...bodies, ...extras.message(route) };
    const filtering = routeOutcome(event.filtering, route);
    const payload = routePayload({
      event,
      read: { ...read, attachments: extras.attachments },
      group,
      message,
      routeDetails: extras.route(recipients),
      bucket: deps.bucket,
      warnings,
      filtering,
    });
    if (payload.message.truncated.text || payload.message.truncated.html) {
      metrics.addMetric('payloads_truncated', MetricUnit.Count, 1);
    }
    const held = filtering.quarantine;
    if (held) {
      // Stored for inspection (what was held and why), never delivered from there: a release
      // re-parses the message with its quarantine lifted.
      await storePayload(deps, payloadKey(event.id, route.id), payload);
      logger.warn('quarantined: payload stored, nothing queued until released', {
        route: route.id,
        reasons: held,
      });
      await deps.quarantined?.(event.id, route.id, held);
      continue;
    }
    jobs.push(...routeJobs(group, event.id, await payloadFor(deps, group, event.id, payload)));
  }
  signal?.throwIfAborted();
  await sendJobs(deps, jobs);
  metrics.addMetric('messages_parsed', MetricUnit.Count, 1);
  metrics.addMetric('deliveries_queued', MetricUnit.Count, jobs.length);
  // Debug: the message log's `parsed` event holds the same at no log-ingestion cost (docs/cost.md).
  logger.debug('message parsed and queued for delivery', {
    size: read.size,
    attachments: read.mime.attachments.length,
    routes: groups.map(({ route }) => route.id),
    jobs: jobs.length,
    warnings,
  });
  const from = read.mime.fields.from[0]?.address ?? null;
  return { jobs, subject: read.mime.fields.subject, from, warnings };
}
