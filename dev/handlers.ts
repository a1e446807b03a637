import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { ControlStore } from '../core/control/index.ts';
import { type Logger, QUEUE_SETTINGS, type ResourceNames, type Runtime } from '../core/index.ts';
import {
  createDeliverHandler,
  createParseHandler,
  type DeliverDeps,
  type ParseDeps,
} from '../functions/index.ts';
import { type Poller, startPoller } from './poller.ts';

export interface LocalHandlersOptions
  extends Pick<DeliverDeps, 's3' | 'sqs' | 'config' | 'secrets' | 'send' | 'now'> {
  readonly resources: Pick<ResourceNames, 'bucket' | 'deliveryQueueUrl' | 'deliveryDlqUrl' | 'inboundDlqUrl'>;
  /** DNS of the parse function. @default the system resolver */
  readonly resolver?: ParseDeps['resolver'];
  /** @default 'local' */
  readonly runtime?: Runtime;
  /**
   * The control plane's store, shared with the listener and the API: API routes, the message log,
   * duplicate markers. @default none: config routes only, no log, duplicates not marked
   */
  readonly controlStore?: ControlStore;
  /** The logger of each part (`parse`, `deliver`, `poller`). @default each part's own */
  readonly loggers?: (serviceName: string) => Logger;
  /** The metrics of each function (`parse`, `deliver`). @default each function's own */
  readonly metrics?: (serviceName: 'parse' | 'deliver') => Metrics;
  /** Each function's own clients, as each has its own role in AWS. @default `s3` and `sqs` for both */
  readonly clients?: Readonly<Record<'parse' | 'deliver', Pick<DeliverDeps, 's3' | 'sqs'>>>;
}

/**
 * The parse and deliver functions wired to one set of clients, resources and config, as the local
 * runtime runs them behind its pollers; `send` and `now` reach the deliver function only.
 */
export function createLocalHandlers(options: LocalHandlersOptions): {
  parse: ReturnType<typeof createParseHandler>;
  deliver: ReturnType<typeof createDeliverHandler>;
} {
  const { config, resources } = options;
  const { parse, deliver } = options.clients ?? { parse: options, deliver: options };
  const control = options.controlStore ? { controlStore: options.controlStore } : {};
  return {
    parse: createParseHandler({
      s3: parse.s3,
      sqs: parse.sqs,
      bucket: resources.bucket,
      deliveryQueueUrl: resources.deliveryQueueUrl,
      inboundDlqUrl: resources.inboundDlqUrl,
      config,
      ...control,
      ...(options.resolver ? { resolver: options.resolver } : {}),
      ...(options.loggers ? { logger: options.loggers('parse') } : {}),
      ...(options.metrics ? { metrics: options.metrics('parse') } : {}),
    }),
    deliver: createDeliverHandler({
      s3: deliver.s3,
      sqs: deliver.sqs,
      bucket: resources.bucket,
      deliveryQueueUrl: resources.deliveryQueueUrl,
      deliveryDlqUrl: resources.deliveryDlqUrl,
      config,
      ...control,
      secrets: options.secrets,
      runtime: options.runtime ?? 'local',
      ...(options.send ? { send: options.send } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.loggers ? { logger: options.loggers('deliver') } : {}),
      ...(options.metrics ? { metrics: options.metrics('deliver') } : {}),
    }),
  };
}

export interface LocalFunctionsOptions extends LocalHandlersOptions {
  readonly resources: LocalHandlersOptions['resources'] & Pick<ResourceNames, 'inboundQueueUrl'>;
  /** Long-poll wait of both pollers; stopping may take this long. */
  readonly waitTimeSeconds: number;
  /** Batches in flight per poller. @default 2 */
  readonly concurrency?: number;
  /** How long each poller gathers records before invoking with a partial batch (Lambda's MaximumBatchingWindow). @default 0 */
  readonly batchingWindowMs?: number;
  /** Visibility asked for on receive, per function. @default each queue's own */
  readonly visibilityTimeoutSeconds?: { readonly parse?: number; readonly deliver?: number };
}

/** The parse and deliver functions running behind their pollers. */
export interface LocalFunctions {
  readonly inbound: Poller;
  readonly delivery: Poller;
  /** Drains parse first, as it feeds the delivery queue, then deliver. */
  stop(): Promise<void>;
}

/**
 * The handlers of {@link createLocalHandlers}, each driven by a Lambda-style poller on its queue
 * with the function's timeout, as the local runtime, the tests and the benchmarks run them.
 */
export async function startLocalFunctions(options: LocalFunctionsOptions): Promise<LocalFunctions> {
  const { resources, waitTimeSeconds, visibilityTimeoutSeconds: visibility = {} } = options;
  const handlers = createLocalHandlers(options);
  // Lambda polls a function's queue with the function's role.
  const clients = options.clients ?? { parse: options, deliver: options };
  const tuning = {
    waitTimeSeconds,
    ...(options.loggers ? { logger: options.loggers('poller') } : {}),
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.batchingWindowMs !== undefined ? { maxBatchingWindowMs: options.batchingWindowMs } : {}),
  };
  const delivery = await startPoller({
    ...tuning,
    sqs: clients.deliver.sqs,
    queueUrl: resources.deliveryQueueUrl,
    functionName: 'mailbridge-deliver',
    timeoutSeconds: QUEUE_SETTINGS.functionTimeoutSeconds.deliver,
    ...(visibility.deliver !== undefined ? { visibilityTimeoutSeconds: visibility.deliver } : {}),
    handler: handlers.deliver,
  });
  try {
    const inbound = await startPoller({
      ...tuning,
      sqs: clients.parse.sqs,
      queueUrl: resources.inboundQueueUrl,
      functionName: 'mailbridge-parse',
      timeoutSeconds: QUEUE_SETTINGS.functionTimeoutSeconds.parse,
      ...(visibility.parse !== undefined ? { visibilityTimeoutSeconds: visibility.parse } : {}),
      handler: handlers.parse,
    });
    return {
      inbound,
      delivery,
      async stop() {
        await inbound.stop();
        await delivery.stop();
      },
    };
  } catch (error) {
    await delivery.stop();
    throw error;
  }
}
