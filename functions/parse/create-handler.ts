import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type ControlStore,
  MessageLogWriter,
  ROUTE_SYNC_DEFAULTS,
  RouteSync,
} from '../../core/control/index.ts';
import {
  createLogger,
  createMetrics,
  type InboundEvent,
  InboundEventSchema,
  type Logger,
  type Metrics,
  parseRecordBody,
  QUEUE_SETTINGS,
  Router,
} from '../../core/index.ts';
import { LOG_FLUSH_MS, timeLeftSignal, untilAborted } from '../time-left.ts';
import { type BoundedResolverOptions, boundedResolver, type DnsResolver, systemResolver } from './dns.ts';
import { type ParseResult, type ProcessDeps, processInboundEvent } from './process.ts';

/** Whether `router` takes `recipient`. */
function routes(router: Router, recipient: string): boolean {
  try {
    router.resolve(recipient);
    return true;
  } catch {
    return false;
  }
}

/** What the parse handler needs; AWS clients are built once by the caller and passed in. */
export interface ParseDeps
  extends Pick<
    ProcessDeps,
    's3' | 'sqs' | 'bucket' | 'deliveryQueueUrl' | 'inboundDlqUrl' | 'config' | 'auth'
  > {
  /**
   * The control plane: API routes beside the config's, the message log, duplicate markers.
   * @default none: the config's routes only, no log, duplicates not marked
   */
  readonly controlStore?: ControlStore;
  /** DNS for SPF, DKIM, DMARC and ARC, mailauth-style. @default the system resolver */
  readonly resolver?: DnsResolver;
  /** Deadline and cache around `resolver`. @default 3 s per lookup, 1000 answers for 5 min */
  readonly dns?: BoundedResolverOptions;
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
  const sync = deps.controlStore
    ? new RouteSync(deps.config, deps.controlStore, {
        // As the listener's: mail it took for a pending domain must route here too, not dead-letter.
        acceptUnverifiedDomains: deps.config.controlPlane.acceptUnverifiedDomains,
        logger,
        metrics,
      })
    : undefined;
  const log = deps.controlStore ? new MessageLogWriter(deps.controlStore, { logger, metrics }) : undefined;
  const now = deps.now ?? (() => new Date());
  let loaded: Promise<void> | undefined;
  let polling: Promise<void> | undefined;
  let lastPoll = 0;
  /**
   * The route index, current within route sync's poll interval plus one read: a Lambda container is
   * frozen between invocations, so it reads the change feed when it runs, not on a timer. A failed
   * first load fails the batch (its records come back), as routing on the config alone would
   * dead-letter mail for API routes; a failed later poll keeps the index in force.
   */
  const configRouter = new Router(deps.config);
  async function currentRoutes(event: InboundEvent): Promise<Router> {
    if (!sync) return configRouter;
    loaded ??= sync.reload().catch((error: unknown) => {
      loaded = undefined;
      throw error;
    });
    await loaded;
    // A recipient the index does not know may be on a route made since the last read (the listener
    // took it, so it routed then): read the feed now rather than dead-letter it as unrouted.
    const stale = now().getTime() - lastPoll >= ROUTE_SYNC_DEFAULTS.pollIntervalMs;
    if (stale || event.envelope.rcptTo.some((recipient) => !routes(sync.index, recipient))) {
      lastPoll = now().getTime();
      polling ??= sync.poll().finally(() => {
        polling = undefined;
      });
    }
    await polling;
    return sync.index;
  }

  function logParsed(event: InboundEvent, result: ParseResult) {
    log?.record(event.id, {
      at: now().toISOString(),
      type: 'parsed',
      subject: result.subject,
      from: result.from,
      jobs: result.jobs.map(({ routeId, endpoint, webhookId }) => ({ route: routeId, endpoint, webhookId })),
      unrouted: result.unrouted,
      warnings: result.warnings,
    });
  }
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
      const router = await currentRoutes(event);
      const result = await untilAborted(
        processInboundEvent(
          event,
          {
            ...deps,
            router,
            resolver,
            ...(deps.controlStore ? { duplicates: deps.controlStore } : {}),
            ...(log
              ? {
                  quarantined: async (messageId: string, route: string, reasons: readonly string[]) =>
                    log.record(messageId, {
                      at: now().toISOString(),
                      type: 'quarantined',
                      route,
                      reasons: [...reasons],
                    }),
                }
              : {}),
            logger: messageLogger,
            metrics,
          },
          signal,
        ),
        signal,
      );
      logParsed(event, result);
    } catch (error) {
      const tries = Number(record.attributes.ApproximateReceiveCount) || 1;
      const last = tries >= QUEUE_SETTINGS.inbound.maxReceiveCount;
      messageLogger.error(
        last
          ? 'processing failed on the last try; SQS moves the record to the inbound DLQ'
          : 'processing failed; the record will be retried',
        { error: error as Error, tries },
      );
      // The log says why the message went no further, as a delivery's dead letter does.
      if (last)
        log?.record(event.id, {
          at: now().toISOString(),
          type: 'parse_failed',
          tries,
          error: error instanceof Error ? error.message : String(error),
        });
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
      // A frozen function sends nothing: what is not written by then waits for the next invocation.
      await log?.flush(LOG_FLUSH_MS);
      metrics.publishStoredMetrics();
    }
  };
}
