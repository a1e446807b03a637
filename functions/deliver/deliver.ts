import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type Config,
  classifyAttempt,
  createLogger,
  createMetrics,
  type DeadLetterReason,
  type DeliveryJob,
  DeliveryJobSchema,
  type DeliveryOutcome,
  decideNext,
  type FailedOutcome,
  fillLinks,
  isMessageObject,
  type Logger,
  MailbridgeError,
  type Metrics,
  MetricUnit,
  type Presign,
  parseRecordBody,
  type Route,
  type Runtime,
  s3EndpointHealthStore,
  s3Presigner,
  signWebhook,
  sqsJson,
  tryTimeoutMs,
  type WebhookSender,
} from '../../core/index.ts';
import packageJson from '../../package.json' with { type: 'json' };
import { OutOfTimeError } from '../time-left.ts';
import { endpointHealthTracker } from './health.ts';
import { createHttpSender } from './sender.ts';

/** The `user-agent` of every webhook. */
export const USER_AGENT = `mailbridge/${packageJson.version}`;

/** What the deliver handler needs; built once per Lambda container (or once by the dev runtime). */
export interface DeliverDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** The mail bucket, where endpoint health is kept (`endpoint-health/`). */
  readonly bucket: string;
  readonly deliveryQueueUrl: string;
  readonly deliveryDlqUrl: string;
  readonly config: Config;
  /** The route's signing secrets (`whsec_…`), resolved from its references; several during a rotation. */
  readonly secrets: (route: Route) => Promise<readonly string[]>;
  /** Sends one try. @default createHttpSender({ runtime }) */
  readonly send?: WebhookSender;
  /** Signs the payload's links afresh at each try. @default s3Presigner(s3), signing at `now` */
  readonly presign?: Presign;
  /** Milliseconds since the epoch. @default Date.now */
  readonly now?: () => number;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  readonly runtime: Runtime;
}

/** The delivery DLQ entry: the job as received, plus how and why it ended there. */
export interface DeadLetterEntry extends DeliveryJob {
  readonly reason: DeadLetterReason;
  /** Tries made in all. */
  readonly attempts: number;
}

/** Marks a record whose retry is scheduled, so the batch reports it as failed and SQS brings it back. */
class RetryScheduledError extends MailbridgeError {
  override name = 'RetryScheduledError';
}

/**
 * The deliver function: for each SQS record, a signed POST of the stored payload to the job's
 * endpoint, then done, a retry later, or the delivery DLQ (docs/architecture.md, "Delivery semantics").
 * Returns only the failed records (Powertools batch), so one bad record never re-runs the others.
 *
 * Retries wait as in-flight messages: ChangeMessageVisibility to the scheduled delay, then the
 * record is reported failed and SQS hands it back when the delay ends, with ApproximateReceiveCount
 * counting the tries. Chosen over re-sending the job with DelaySeconds because a visibility timeout
 * reaches 12 h in one step (DelaySeconds stops at 15 min, so the schedule's 2 h to 10 h waits would
 * need a chain of hops) and takes one call, where a re-send plus delete can duplicate the job when
 * the delete fails. The price is that waiting jobs count toward the queue's 120k in-flight limit.
 */
export function createDeliverHandler(
  deps: DeliverDeps,
): (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse> {
  const now = deps.now ?? Date.now;
  const send = deps.send ?? createHttpSender({ runtime: deps.runtime });
  const logger = deps.logger ?? createLogger('deliver');
  const metrics = deps.metrics ?? createMetrics('deliver');
  const presign = deps.presign ?? s3Presigner(deps.s3, { now: () => new Date(now()) });
  const health = endpointHealthTracker({
    store: s3EndpointHealthStore(deps.s3, deps.bucket),
    now,
    logger,
  });

  async function readPayload(job: DeliveryJob): Promise<Uint8Array | undefined> {
    try {
      const object = await deps.s3.send(
        new GetObjectCommand({ Bucket: job.payload.bucket, Key: job.payload.key }),
      );
      return await object.Body!.transformToByteArray();
    } catch (error) {
      // Without s3:ListBucket (the role has none on payloads/) S3 answers a missing key with 403
      // AccessDenied, not 404: the role may read every payload, so a 403 means it is not there.
      const name = (error as Error).name;
      if (name === 'NoSuchKey' || name === 'AccessDenied') return undefined;
      throw error;
    }
  }

  /**
   * The webhook body: the stored payload with its links signed now, so no try carries links that
   * have died (see {@link fillLinks}); only this message's own objects are signed.
   */
  function withFreshLinks(stored: Uint8Array, job: DeliveryJob): Promise<Buffer> {
    return fillLinks(
      stored,
      (ref) => presign(ref.bucket, ref.key),
      (ref) => ref.bucket === job.payload.bucket && isMessageObject(job.messageId, ref.key),
    );
  }

  /** One try, or the reason none is made; `tried` says whether the endpoint was asked. */
  async function attempt(
    job: DeliveryJob,
    route: Route | undefined,
    remainingMs: number | undefined,
  ): Promise<{ outcome: DeliveryOutcome; tried: boolean }> {
    const untried = (reason: 'permanent' | 'parked', error: string) => ({
      outcome: { class: 'permanent', reason, error } as const,
      tried: false,
    });
    // The config may have changed since the job was queued: stop retrying what is no longer wanted.
    if (!route?.endpoints.includes(job.endpoint)) {
      return untried('permanent', `endpoint no longer configured on route ${job.routeId}`);
    }
    const state = await health.current(job.endpoint);
    if (state.disabledAt !== null) {
      return untried('parked', `endpoint disabled since ${state.disabledAt} because ${state.reason}`);
    }
    const stored = await readPayload(job);
    if (!stored) {
      return untried('permanent', `payload s3://${job.payload.bucket}/${job.payload.key} not found`);
    }
    const timeoutMs = tryTimeoutMs(route.timeout, remainingMs);
    if (timeoutMs === undefined) {
      throw new OutOfTimeError('too little time left in this invocation for a try; it comes back later');
    }
    const body = await withFreshLinks(stored, job);
    const started = now();
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      ...signWebhook(job.webhookId, Math.floor(started / 1000), body, await deps.secrets(route)),
    };
    const result = await send({ url: job.endpoint, headers, body, timeoutMs });
    metrics.addMetric('delivery_latency', MetricUnit.Milliseconds, now() - started);
    const outcome = classifyAttempt(result, now());
    const { before, after } = await health.record(job.endpoint, outcome, route.disableAfter);
    if (after.disabledAt !== null && before.disabledAt === null) {
      metrics.addMetric('endpoint_disabled', MetricUnit.Count, 1);
      logger.error('endpoint disabled: its jobs are parked until redriven', {
        messageId: job.messageId,
        endpoint: job.endpoint,
        reason: after.reason,
      });
      // Its retries would only be parked later: park this one now.
      if (outcome.class === 'retry') {
        const { retryAfterSeconds: _wait, ...failure } = outcome;
        return { outcome: { ...failure, class: 'permanent', reason: 'parked' }, tried: true };
      }
    } else if (before.firstFailureAt !== null && after.firstFailureAt === null) {
      logger.info('endpoint recovered', { messageId: job.messageId, endpoint: job.endpoint });
    }
    return { outcome, tried: true };
  }

  async function deadLetter(
    job: DeliveryJob,
    outcome: FailedOutcome,
    reason: DeadLetterReason,
    attempts: number,
  ) {
    const entry: DeadLetterEntry = {
      ...job,
      reason,
      attempts,
      ...(outcome.status === undefined ? {} : { lastStatus: outcome.status }),
      lastError: outcome.error,
    };
    await deps.sqs.send(
      new SendMessageCommand({ QueueUrl: deps.deliveryDlqUrl, MessageBody: sqsJson(entry) }),
    );
    const metric = metrics.singleMetric();
    metric.addDimension('reason', reason);
    metric.addMetric('dead_lettered', MetricUnit.Count, 1);
    if (reason === 'parked') metrics.addMetric('parked', MetricUnit.Count, 1);
  }

  async function deliverRecord(record: SQSRecord, context?: Context): Promise<void> {
    let job: DeliveryJob;
    try {
      job = parseRecordBody(record, DeliveryJobSchema, 'a DeliveryJob');
    } catch (error) {
      logger.error('not a delivery job', { sqsMessageId: record.messageId, error: (error as Error).message });
      throw error;
    }
    // A DLQ redrive brings the job back with a fresh receive count, and so a fresh schedule.
    const tries = job.attempt + (Number(record.attributes.ApproximateReceiveCount) || 1);
    const route = deps.config.routes.find((candidate) => candidate.id === job.routeId);
    const { outcome, tried } = await attempt(job, route, context?.getRemainingTimeInMillis());
    const about = {
      messageId: job.messageId,
      webhookId: job.webhookId,
      routeId: job.routeId,
      endpoint: job.endpoint,
      tries,
    };
    if (outcome.class === 'delivered') {
      metrics.addMetric('delivered', MetricUnit.Count, 1);
      logger.info('webhook delivered', { ...about, status: outcome.status });
      return;
    }
    const decision = decideNext(outcome, route?.retrySchedule ?? [], tries);
    if (decision.action === 'retry') {
      await deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: deps.deliveryQueueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: decision.delaySeconds,
        }),
      );
      metrics.addMetric('retried', MetricUnit.Count, 1);
      logger.warn('webhook try failed, retry scheduled', {
        ...about,
        ...outcome,
        delaySeconds: decision.delaySeconds,
      });
      throw new RetryScheduledError(`retry in ${decision.delaySeconds} s: ${outcome.error}`);
    }
    await deadLetter(job, outcome, decision.reason, tried ? tries : tries - 1);
    logger.error('webhook dead-lettered', { ...about, ...outcome, reason: decision.reason });
  }

  return async (event, context) => {
    const processor = new BatchProcessor(EventType.SQS);
    try {
      return await processPartialResponse(event, deliverRecord, processor, {
        ...(context ? { context } : {}),
        throwOnFullBatchFailure: false,
        processInParallel: true,
      });
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}
