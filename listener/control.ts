import type { SMTPServerSession } from 'smtp-server';
import {
  type ControlStore,
  MessageLogWriter,
  type MessageLogWriterOptions,
  RouteSync,
  type RouteSyncOptions,
} from '../core/control/index.ts';
import { type Config, createMetrics, type Logger, type Metrics, Router } from '../core/index.ts';
import type { Envelope, SpooledMessage } from './spool.ts';

/** The control plane as the listener uses it: API routes and domains at RCPT, the message log. */
export interface ListenerControlOptions {
  /** Routes, domains and their change feed; the message log and refusals. */
  readonly store: Pick<
    ControlStore,
    'pageRoutes' | 'listDomains' | 'changesSince' | 'appendEvents' | 'putRefusals'
  >;
  /** Take mail for API domains whose DNS proof is not checked yet (local runs). @default false */
  readonly acceptUnverifiedDomains?: boolean;
  /** How often the change feed is read, and the full reload. @default RouteSync's: 5 s, 10 min */
  readonly sync?: Pick<RouteSyncOptions, 'pollIntervalMs' | 'fullReloadIntervalMs'>;
  /** The log writer's bounds and retries. @default MessageLogWriter's */
  readonly log?: Omit<MessageLogWriterOptions, 'logger' | 'metrics'>;
  /**
   * Where the log writer and route sync count (ControlLogWriteFailures, ControlLogDropped,
   * RefusalsSampledOut, RouteSyncFailures); published every metrics interval.
   * @default createMetrics('listener'), apart from the listener's own counters
   */
  readonly metrics?: Metrics;
}

/** How long a stopping listener lets the message log write what it holds. */
const LOG_CLOSE_TIMEOUT_MS = 5000;

/** What the listener's hooks call; without a control plane, the config's routes and no log. */
export interface ListenerControl {
  /** The RCPT decision in force, kept up to date in place by route sync. */
  readonly router: Router;
  /**
   * An SMTP refusal of MAIL FROM (no recipient; the sender as given, "" when unknown) or of RCPT TO
   * (the sender from the envelope). `reply` as sent: `550 5.1.1 Mailbox <…> does not exist`.
   * Never throws, never waits.
   */
  refused(
    session: SMTPServerSession,
    reply: string,
    attempt: { mailFrom?: string; recipient?: string },
  ): void;
  /**
   * A message refused for good at the end of DATA (`reply` a 5xx as sent): a refusal of each
   * recipient of `session.envelope`, which holds them until that reply is sent. Never throws, never waits.
   */
  refusedMessage(session: SMTPServerSession, reply: string): void;
  /** The message is stored and queued; its 250 follows. Never throws, never waits. */
  received(message: SpooledMessage, envelope: Envelope, bucket: string): void;
  /** Stops the route sync and writes what the log holds, for at most 5 s. */
  close(): Promise<void>;
}

/**
 * Starts the control plane's side of the listener: a full load of API routes and domains (throws
 * if it fails, so a task that cannot know its recipients never answers RCPT), then the change feed
 * polled in the background, and a fire-and-forget message log writer.
 */
export async function startListenerControl(
  config: Pick<Config, 'domains' | 'routes'>,
  options: ListenerControlOptions | undefined,
  logger: Logger,
  metricsIntervalMs: number,
  router: Router = new Router(config),
): Promise<ListenerControl> {
  if (!options) {
    return {
      router,
      refused: () => undefined,
      refusedMessage: () => undefined,
      received: () => undefined,
      close: async () => undefined,
    };
  }
  const metrics = options.metrics ?? createMetrics('listener');
  const sync = new RouteSync(config, options.store, {
    ...options.sync,
    acceptUnverifiedDomains: options.acceptUnverifiedDomains ?? false,
    logger,
    metrics,
  });
  await sync.start();
  const writer = new MessageLogWriter(options.store, { ...options.log, logger, metrics });
  const publish = () => {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  };
  const timer = setInterval(publish, metricsIntervalMs).unref();
  const refused: ListenerControl['refused'] = (session, reply, attempt) => {
    const { mailFrom } = session.envelope;
    writer.refused({
      at: new Date().toISOString(),
      recipient: attempt.recipient ?? '',
      mailFrom: attempt.mailFrom ?? (mailFrom ? mailFrom.address : ''),
      remoteAddress: session.remoteAddress,
      reply,
    });
  };
  return {
    router: sync.index,
    refused,
    refusedMessage(session, reply) {
      // Each under the writer's caps: a message to 50 recipients is not 50 writes.
      for (const { address } of session.envelope.rcptTo) refused(session, reply, { recipient: address });
    },
    received(message, envelope, bucket) {
      writer.record(
        message.id,
        {
          at: new Date().toISOString(),
          type: 'received',
          mailFrom: envelope.mailFrom,
          rcptTo: envelope.rcptTo,
          size: message.size,
          remoteAddress: envelope.remoteAddress,
          helo: envelope.helo,
          tls: envelope.tls !== null,
          sha256: message.sha256,
          ...(message.filtering ? { filtering: message.filtering } : {}),
        },
        { bucket, key: message.key },
      );
    },
    async close() {
      await sync.stop();
      const written = await writer.close(LOG_CLOSE_TIMEOUT_MS);
      if (!written) {
        logger.warn('message log not fully written at shutdown', { pending: writer.stats.pending });
      }
      clearInterval(timer);
      publish();
    },
  };
}
