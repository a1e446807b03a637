import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { classifyS3Error, type Presign, s3EndpointHealthStore, s3Presigner } from '../../core/aws/index.ts';
import { type ControlStore, MessageLogWriter, pipelineRoute } from '../../core/control/index.ts';
import {
  type AttemptResult,
  type Config,
  classifyAttempt,
  createLogger,
  createMetrics,
  type DeadLetterEntry,
  type DeadLetterReason,
  type DeliveryEnd,
  type DeliveryJob,
  DeliveryJobSchema,
  decideDelivery,
  type FailedOutcome,
  fillLinks,
  isMessageObject,
  type Logger,
  MailbridgeError,
  type Metrics,
  MetricUnit,
  parseRecordBody,
  payloadKey,
  type Route,
  type Runtime,
  SQS_LIMITS,
  signWebhook,
  sqsJson,
  storedPayloadProblem,
  tryTimeoutMs,
  type WebhookSender,
} from '../../core/index.ts';
import packageJson from '../../package.json' with { type: 'json' };
import { LOG_FLUSH_MS, OutOfTimeError } from '../time-left.ts';
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
  /**
   * The control plane: routes made through the API (read by id at each try, so a rotated secret
   * signs at once) and the message log of each try.
   * @default none: the config's routes only, no log
   */
  readonly controlStore?: ControlStore;
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
  const healthTracker = endpointHealthTracker({
    store: s3EndpointHealthStore(deps.s3, deps.bucket),
    now,
    logger,
  });

  const log = deps.controlStore ? new MessageLogWriter(deps.controlStore, { logger, metrics }) : undefined;
  /** The timeline fields every event of one job carries. */
  const jobFields = (job: DeliveryJob) => ({
    at: new Date(now()).toISOString(),
    route: job.routeId,
    endpoint: job.endpoint,
    webhookId: job.webhookId,
  });

  /** The job's route as it is now: the config's, or the API's as stored (its current secrets). */
  async function currentRoute(job: DeliveryJob): Promise<Route | undefined> {
    const configured = deps.config.routes.find((candidate) => candidate.id === job.routeId);
    if (configured || !deps.controlStore) return configured;
    const stored = await deps.controlStore.getRoute(job.routeId);
    return stored ? pipelineRoute(stored, new Date(now())) : undefined;
  }

  /** The stored payload's bytes, or why there are none to send. */
  async function readPayload(job: DeliveryJob): Promise<Uint8Array | { problem: string }> {
    const where = 'inline' in job.payload ? 'inline' : `s3://${job.payload.bucket}/${job.payload.key}`;
    let stored: Uint8Array;
    if ('inline' in job.payload) {
      stored = Buffer.from(JSON.stringify(job.payload.inline));
    } else {
      try {
        const object = await deps.s3.send(
          new GetObjectCommand({ Bucket: job.payload.bucket, Key: job.payload.key }),
        );
        stored = await object.Body!.transformToByteArray();
      } catch (error) {
        // Without s3:ListBucket (the role has none on payloads/) S3 answers a missing key with 403
        // AccessDenied, not 404: the role may read every payload, so a 403 means it is not there.
        if (classifyS3Error(error, { deniedMeansMissing: true }) === 'missing') {
          return { problem: `payload ${where} not found` };
        }
        throw error;
      }
    }
    const problem = storedPayloadProblem(stored);
    return problem ? { problem: `payload ${where} ${problem}` } : stored;
  }

  /**
   * The webhook body: the stored payload with its links signed now, so no try carries links that
   * have died (see {@link fillLinks}); only this message's own objects are signed.
   */
  function withFreshLinks(stored: Uint8Array, job: DeliveryJob): Promise<Buffer> {
    return fillLinks(
      stored,
      (ref) => presign(ref.bucket, ref.key),
      (ref) => ref.bucket === deps.bucket && isMessageObject(job.messageId, ref.key),
    );
  }

  /** One signed POST of `stored` to the job's endpoint; logs and counts the endpoint's health changes. */
  async function tryOnce(job: DeliveryJob, route: Route, stored: Uint8Array, timeoutMs: number) {
    const body = await withFreshLinks(stored, job);
    const started = now();
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      ...signWebhook(job.webhookId, Math.floor(started / 1000), body, await deps.secrets(route)),
    };
    const result = await send({ url: job.endpoint, headers, body, timeoutMs });
    const durationMs = now() - started;
    metrics.addMetric('delivery_latency', MetricUnit.Milliseconds, durationMs);
    const outcome = classifyAttempt(result, now());
    const health = await healthTracker.record(job.endpoint, outcome, route.disableAfter);
    if (health.after.disabledAt !== null && health.before.disabledAt === null) {
      metrics.addMetric('endpoint_disabled', MetricUnit.Count, 1);
      logger.error('endpoint disabled: its jobs are parked until redriven', {
        messageId: job.messageId,
        endpoint: job.endpoint,
        reason: health.after.reason,
      });
    } else if (health.before.firstFailureAt !== null && health.after.firstFailureAt === null) {
      logger.info('endpoint recovered', { messageId: job.messageId, endpoint: job.endpoint });
    }
    return { result, durationMs, outcome, health };
  }

  /**
   * Tries the job if the policy lets it ({@link decideDelivery}) and returns what to do next; `tried`
   * is what the endpoint answered, when it was asked.
   */
  async function attempt(
    job: DeliveryJob,
    tries: number,
    remainingMs: number | undefined,
  ): Promise<{ step: DeliveryEnd; tried?: { result: AttemptResult; durationMs: number } }> {
    const facts = {
      job,
      route: await currentRoute(job),
      health: await healthTracker.current(job.endpoint),
      tries,
    };
    const ready = decideDelivery(facts, { stage: 'ready' });
    if (ready.action !== 'try') return { step: ready };
    const { route } = ready;
    const stored = await readPayload(job);
    if ('problem' in stored)
      return { step: decideDelivery(facts, { stage: 'no-payload', error: stored.problem }) };
    const timeoutMs = tryTimeoutMs(route.timeout, remainingMs);
    if (timeoutMs === undefined) {
      throw new OutOfTimeError('too little time left in this invocation for a try; it comes back later');
    }
    const { result, durationMs, outcome, health } = await tryOnce(job, route, stored, timeoutMs);
    return {
      step: decideDelivery(facts, { stage: 'tried', outcome, health }),
      tried: { result, durationMs },
    };
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
    let body = sqsJson(entry);
    if (Buffer.byteLength(body) > SQS_LIMITS.messageBytes && 'inline' in job.payload) {
      // The inline payload and a long last error together overflow one message: store the payload.
      const key = payloadKey(job.messageId, job.routeId);
      await deps.s3.send(
        new PutObjectCommand({
          Bucket: deps.bucket,
          Key: key,
          Body: JSON.stringify(job.payload.inline),
          ContentType: 'application/json',
        }),
      );
      body = sqsJson({ ...entry, payload: { bucket: deps.bucket, key } });
    }
    await deps.sqs.send(new SendMessageCommand({ QueueUrl: deps.deliveryDlqUrl, MessageBody: body }));
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
    const tries = Number(record.attributes.ApproximateReceiveCount) || 1;
    const { step, tried } = await attempt(job, tries, context?.getRemainingTimeInMillis());
    if (tried) {
      const { result, durationMs } = tried;
      log?.record(job.messageId, {
        ...jobFields(job),
        type: 'attempt',
        attempt: tries,
        status: result.kind === 'response' ? result.status : null,
        error:
          step.action === 'done'
            ? null
            : { class: result.kind === 'response' ? 'http' : result.kind, text: step.failure.error },
        durationMs,
      });
    }
    const about = {
      messageId: job.messageId,
      webhookId: job.webhookId,
      routeId: job.routeId,
      endpoint: job.endpoint,
      tries,
    };
    if (step.action === 'done') {
      metrics.addMetric('delivered', MetricUnit.Count, 1);
      logger.info('webhook delivered', { ...about, status: step.status });
      log?.record(job.messageId, { ...jobFields(job), type: 'delivered', status: step.status });
      return;
    }
    const { failure } = step;
    if (step.action === 'retry') {
      await deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: deps.deliveryQueueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: step.delaySeconds,
        }),
      );
      metrics.addMetric('retried', MetricUnit.Count, 1);
      log?.record(job.messageId, {
        ...jobFields(job),
        type: 'retry_scheduled',
        attempt: tries + 1,
        nextAttemptAt: new Date(now() + step.delaySeconds * 1000).toISOString(),
      });
      logger.warn('webhook try failed, retry scheduled', {
        ...about,
        ...failure,
        delaySeconds: step.delaySeconds,
      });
      throw new RetryScheduledError(`retry in ${step.delaySeconds} s: ${failure.error}`);
    }
    await deadLetter(job, failure, step.reason, tried ? tries : tries - 1);
    logger.error('webhook dead-lettered', { ...about, ...failure, reason: step.reason });
    log?.record(job.messageId, {
      ...jobFields(job),
      type: 'dead_lettered',
      reason: step.reason,
      status: failure.status ?? null,
      error: failure.error,
    });
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
      // A frozen function sends nothing: what is not written by then waits for the next invocation.
      await log?.flush(LOG_FLUSH_MS);
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}
