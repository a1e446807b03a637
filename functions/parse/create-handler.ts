import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type Config,
  createLogger,
  createMetrics,
  type InboundEvent,
  InboundEventSchema,
  type Logger,
  type Metrics,
  parseRecordBody,
  Router,
} from '../../core/index.ts';
import { timeLeftSignal, untilAborted } from '../time-left.ts';
import type { AuthLimits } from './auth.ts';
import { type BoundedResolverOptions, boundedResolver, type DnsResolver, systemResolver } from './dns.ts';
import { processInboundEvent } from './process.ts';

/** What the parse handler needs; AWS clients are built once by the caller and passed in. */
export interface ParseDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** Bucket for attachments and payloads (the raw object's bucket comes with each event). */
  readonly bucket: string;
  readonly deliveryQueueUrl: string;
  /** Where a message whose recipients no longer route is dead-lettered (reason `unrouted`). */
  readonly inboundDlqUrl: string;
  readonly config: Config;
  /** DNS for SPF, DKIM, DMARC and ARC, mailauth-style. @default the system resolver */
  readonly resolver?: DnsResolver;
  /** Deadline and cache around `resolver`. @default 3 s per lookup, 1000 answers for 5 min */
  readonly dns?: BoundedResolverOptions;
  /** Deadline and key-lookup budget of each message's authentication. @default AUTH_LIMITS */
  readonly auth?: AuthLimits;
  readonly now?: () => Date;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/**
 * The parse function: each SQS record on `inbound` is one stored message, processed by
 * {@link processInboundEvent}; Powertools runs the records of a batch concurrently. Only the
 * records that failed (I/O errors, invalid bodies) come back in `batchItemFailures`; broken MIME
 * is not a failure, it is delivered degraded. Shortly before the function's time runs out the
 * records still running are given up and reported as failures, so the finished ones count.
 */
export function createParseHandler(
  deps: ParseDeps,
): (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse> {
  const logger = deps.logger ?? createLogger('parse');
  const metrics = deps.metrics ?? createMetrics('parse');
  const router = new Router(deps.config);
  const resolver = boundedResolver(deps.resolver ?? systemResolver(), {
    ...(deps.now ? { now: () => deps.now!().getTime() } : {}),
    ...deps.dns,
  });

  const processRecord = async (record: SQSRecord, signal: AbortSignal) => {
    let event: InboundEvent;
    try {
      event = parseRecordBody(record, InboundEventSchema, 'an InboundEvent');
    } catch (error) {
      logger.error('invalid inbound record', { sqsMessageId: record.messageId, error: error as Error });
      throw error;
    }
    const messageLogger = logger.createChild({ persistentKeys: { messageId: event.id } });
    try {
      await untilAborted(
        processInboundEvent(event, { ...deps, router, resolver, logger: messageLogger, metrics }, signal),
        signal,
      );
    } catch (error) {
      messageLogger.error('processing failed; the record will be retried', { error: error as Error });
      throw error;
    }
  };

  return async (event, context) => {
    const timeLeft = timeLeftSignal(context);
    try {
      // One processor per invocation: it holds the batch's records and failures, and the local
      // poller runs invocations concurrently in one process (Lambda runs one at a time).
      return await processPartialResponse(
        event,
        (record: SQSRecord) => processRecord(record, timeLeft.signal),
        new BatchProcessor(EventType.SQS),
        {
          ...(context ? { context } : {}),
          // Lambda retries whatever is listed; a thrown error would only hide which records failed.
          throwOnFullBatchFailure: false,
        },
      );
    } finally {
      timeLeft.clear();
      metrics.publishStoredMetrics();
    }
  };
}
