import type { ResourceNames, Runtime } from '../core/index.ts';
import {
  createDeliverHandler,
  createParseHandler,
  type DeliverDeps,
  type ParseDeps,
} from '../functions/index.ts';

export interface LocalHandlersOptions
  extends Pick<DeliverDeps, 's3' | 'sqs' | 'config' | 'secrets' | 'send' | 'now'> {
  readonly resources: Pick<ResourceNames, 'bucket' | 'deliveryQueueUrl' | 'deliveryDlqUrl'>;
  /** DNS of the parse function. @default the system resolver */
  readonly resolver?: ParseDeps['resolver'];
  /** @default 'local' */
  readonly runtime?: Runtime;
}

/**
 * The parse and deliver functions wired to one set of clients, resources and config, as the local
 * runtime runs them behind its pollers; `send` and `now` reach the deliver function only.
 */
export function createLocalHandlers(options: LocalHandlersOptions): {
  parse: ReturnType<typeof createParseHandler>;
  deliver: ReturnType<typeof createDeliverHandler>;
} {
  const { s3, sqs, config, resources } = options;
  return {
    parse: createParseHandler({
      s3,
      sqs,
      bucket: resources.bucket,
      deliveryQueueUrl: resources.deliveryQueueUrl,
      config,
      ...(options.resolver ? { resolver: options.resolver } : {}),
    }),
    deliver: createDeliverHandler({
      s3,
      sqs,
      bucket: resources.bucket,
      deliveryQueueUrl: resources.deliveryQueueUrl,
      deliveryDlqUrl: resources.deliveryDlqUrl,
      config,
      secrets: options.secrets,
      runtime: options.runtime ?? 'local',
      ...(options.send ? { send: options.send } : {}),
      ...(options.now ? { now: options.now } : {}),
    }),
  };
}
