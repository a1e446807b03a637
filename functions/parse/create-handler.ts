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
  type Presign,
  parseRecordBody,
  Router,
  s3Presigner,
} from '../../core/index.ts';
import { type BoundedResolverOptions, boundedResolver, type DnsResolver, systemResolver } from './dns.ts';
import { processInboundEvent } from './process.ts';

/** What the parse handler needs; AWS clients are built once by the caller and passed in. */
export interface ParseDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** Bucket for attachments and payloads (the raw object's bucket comes with each event). */
  readonly bucket: string;
  readonly deliveryQueueUrl: string;
  readonly config: Config;
  /** DNS for SPF, DKIM, DMARC and ARC, mailauth-style. @default the system resolver */
  readonly resolver?: DnsResolver;
  /** Deadline and cache around `resolver`. @default 3 s per lookup, 1000 answers for 5 min */
  readonly dns?: BoundedResolverOptions;
  readonly now?: () => Date;
  /** Links to raw messages and attachments. @default S3 presigned GET, see {@link s3Presigner} */
  readonly presign?: Presign;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/**
 * The parse function: each SQS record on `inbound` is one stored message, processed by
 * {@link processInboundEvent}. Only the records that failed (I/O errors, invalid bodies) come back
 * in `batchItemFailures`; broken MIME is not a failure, it is delivered degraded.
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
  const presign = deps.presign ?? s3Presigner(deps.s3, deps.now ? { now: deps.now } : {});

  const processRecord = async (record: SQSRecord) => {
    let event: InboundEvent;
    try {
      event = parseRecordBody(record, InboundEventSchema, 'an InboundEvent');
    } catch (error) {
      logger.error('invalid inbound record', { sqsMessageId: record.messageId, error: error as Error });
      throw error;
    }
    const messageLogger = logger.createChild({ persistentKeys: { messageId: event.id } });
    try {
      await processInboundEvent(event, {
        ...deps,
        router,
        resolver,
        presign,
        logger: messageLogger,
        metrics,
      });
    } catch (error) {
      messageLogger.error('processing failed; the record will be retried', { error: error as Error });
      throw error;
    }
  };

  return async (event, context) => {
    try {
      // One processor per invocation: it holds the batch's records and failures, and the local
      // poller runs invocations concurrently in one process (Lambda runs one at a time).
      return await processPartialResponse(event, processRecord, new BatchProcessor(EventType.SQS), {
        ...(context ? { context } : {}),
        // Lambda retries whatever is listed; a thrown error would only hide which records failed.
        throwOnFullBatchFailure: false,
      });
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}
