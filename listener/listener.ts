import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import {
  type Config,
  createLogger,
  createMetrics,
  type ListenerConfig,
  type Logger,
  type Metrics,
  type Router,
  SessionLimitError,
} from '../core/index.ts';
import { type ListenerControlOptions, startListenerControl } from './control.ts';
import { type BatchingOptions, SqsEventQueue } from './event-queue.ts';
import { type DnsResolver, SessionFilter } from './filtering/index.ts';
import { type HealthServer, startHealthServer, storageReadiness } from './health.ts';
import { ConnectionLimits } from './limits.ts';
import { MemoryBudget } from './memory-budget.ts';
import { ListenerMetrics } from './metrics.ts';
import { translateProxyV2, trustedPeers } from './proxy.ts';
import { type AuthVerifier, sessionPolicy } from './session-policy.ts';
import { MailbridgeConnection, MailbridgeSmtpServer } from './smtp.ts';
import type { SpoolTarget } from './spool.ts';
import type { TlsMaterial } from './tls.ts';

/** What {@link startListener} needs; AWS clients and secrets are resolved by the caller. */
export interface ListenerOptions {
  readonly config: Config;
  /** Which recipients are ours without a control plane (the config's routes by default). */
  readonly router?: Router;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** Bucket for raw messages (`MAILBRIDGE_BUCKET`). */
  readonly bucket: string;
  /** Queue for InboundEvents (`MAILBRIDGE_INBOUND_QUEUE_URL`). */
  readonly inboundQueueUrl: string;
  /** Certificate and key for STARTTLS and implicit TLS (see `loadTlsMaterial`). */
  readonly tls: TlsMaterial;
  /** SMTP AUTH users with their resolved passwords, or a function that checks them. */
  readonly authUsers: ReadonlyMap<string, string> | AuthVerifier;
  /** @default createLogger('listener') */
  readonly logger?: Logger;
  /** @default createMetrics('listener') */
  readonly metrics?: Metrics;
  /** How often metrics are published. @default 60000 */
  readonly metricsIntervalMs?: number;
  /** How InboundEvents of concurrent sessions are grouped into SQS batch sends. */
  readonly batching?: BatchingOptions;
  /**
   * The control plane: RCPT decided by the config's and the API's routes and domains, kept in step
   * with the store; SMTP refusals and each message's `received` event in the message log.
   * @default none: the config's routes only, nothing logged
   */
  readonly control?: ListenerControlOptions;
  /** DNS of the DNSBL, SPF and DMARC checks. @default the system resolver */
  readonly resolver?: DnsResolver;
}

/** One bound SMTP port. */
export interface BoundListener {
  readonly mode: ListenerConfig['mode'];
  readonly host: string;
  /** The actual port, also when the config asked for port 0. */
  readonly port: number;
}

/** A started listener. */
export interface RunningListener {
  readonly listeners: readonly BoundListener[];
  /** Port of `GET /healthz`. */
  readonly healthPort: number;
  /** SMTP sessions open now, on all ports (what a leak check or an operator watches). */
  sessions(): number;
  /** Swaps the certificate for new connections (a renewed certificate from Secrets Manager). */
  updateTls(key: string | Buffer, cert: string | Buffer): void;
  /**
   * Graceful stop: health turns to draining, no new connections, open sessions may finish their
   * message for up to `config.limits.closeTimeout`, then the rest get `421` and are closed.
   * Resolves when the in-flight work has settled. Calling it again returns the same promise.
   */
  close(): Promise<void>;
}

/**
 * Starts one SMTP server per entry of `config.listeners` (mode `mx`, `submission` or
 * `implicit-tls`, each with its session policy, see session-policy.ts) and the health endpoint on
 * `config.health`; this file is the lifecycle: start, ports, PROXY headers, eviction at the
 * connection limit, drain and stop.
 */
export async function startListener(options: ListenerOptions): Promise<RunningListener> {
  const { config } = options;
  const limits = config.limits;
  const logger = options.logger ?? createLogger('listener');
  const metricsIntervalMs = options.metricsIntervalMs ?? 60_000;
  // First: a listener that cannot load its routes must not answer RCPT (it throws).
  const control = await startListenerControl(
    config,
    options.control,
    logger,
    metricsIntervalMs,
    options.router,
  );
  const metrics = new ListenerMetrics(
    options.metrics ?? createMetrics('listener'),
    metricsIntervalMs,
    limits.maxConnections,
  );
  const connections = new ConnectionLimits(limits);
  const trustedProxy = trustedPeers(config.trustedProxies);
  const filter = new SessionFilter(config, {
    report: metrics,
    ...(options.resolver ? { resolver: options.resolver } : {}),
  });
  const target: SpoolTarget = {
    s3: options.s3,
    bucket: options.bucket,
    events: new SqsEventQueue(options.sqs, options.inboundQueueUrl, options.batching),
    hostname: config.hostname,
    maxMessageBytes: limits.maxMessageBytes,
    rejectBareLf: limits.rejectBareLf,
    budget: new MemoryBudget(limits.spoolMemoryBytes, limits.spoolWait * 1000),
  };
  let draining = false;
  let onSessionClosed = () => {};

  const policy = sessionPolicy({
    config,
    logger,
    metrics,
    control,
    filter,
    connections,
    authUsers: options.authUsers,
    tls: options.tls,
    target,
    evictIdlest,
    sessionClosed: () => onSessionClosed(),
  });

  let health: HealthServer | undefined;
  const servers: { smtp: MailbridgeSmtpServer; front: Server }[] = [];
  const handshaking = new Set<Socket>();
  const onServerError = (error: Error) =>
    // A failed TLS handshake or a reset socket lands here; it must never take the process down.
    logger.warn('connection error', { error: error.message, code: (error as NodeJS.ErrnoException).code });

  const started: BoundListener[] = [];
  try {
    for (const listener of config.listeners) {
      const smtp = new MailbridgeSmtpServer(policy.options(listener.mode), {
        onOversized: (session, reply) => {
          metrics.rejected('too_large');
          // Before MAIL is accepted it is the SIZE= of MAIL FROM; later, the DATA itself, which
          // refuses the message to each of its recipients.
          if (session.envelope.mailFrom) control.refusedMessage(session, reply);
          else control.refused(session, reply, {});
        },
        policy: {
          envelopeTimeoutMs: limits.envelopeTimeout * 1000,
          maxIdleCommands: limits.maxIdleCommands,
          maxUnauthenticatedCommands: listener.mode === 'mx' ? undefined : limits.maxUnauthenticatedCommands,
        },
        onPolicyRefusal: policy.noteRefusal,
      });
      smtp.on('error', onServerError);
      // Our own accepting server hands sockets to smtp-server: the place to translate PROXY v2,
      // and one shutdown path whether or not a PROXY header is expected.
      const front = createServer((socket) => {
        if (!config.proxyProtocol) return void smtp.server.emit('connection', socket);
        if (!trustedProxy(socket.remoteAddress)) {
          // Its PROXY header could claim any client address (and so dodge SPF and the AUTH lockout).
          metrics.rejected('untrusted_proxy');
          logger.warn('connection refused: not from a trusted proxy', {
            remoteAddress: socket.remoteAddress,
          });
          socket.on('error', () => {});
          return void socket.destroy();
        }
        handshaking.add(socket);
        void translateProxyV2(socket, limits.socketTimeout * 1000).then((ok) => {
          handshaking.delete(socket);
          if (ok) smtp.server.emit('connection', socket);
        });
      });
      // Beyond the limit smtp-server still answers 421 4.7.0 from onConnect; twice the limit is
      // where sockets are dropped unanswered, to bound what a flood can hold.
      front.maxConnections = limits.maxConnections * 2;
      front.on('error', onServerError);
      servers.push({ smtp, front });
      front.listen(listener.port, listener.host);
      await once(front, 'listening');
      const address = front.address();
      if (!address || typeof address === 'string') throw new Error('SMTP listener has no TCP address');
      started.push({ mode: listener.mode, host: listener.host, port: address.port });
    }
    health = await startHealthServer({
      host: config.health.host,
      port: config.health.port,
      isDraining: () => draining,
      readiness: storageReadiness({ ...options, logger }),
      proxyProtocol: config.proxyProtocol,
      headerTimeoutMs: limits.socketTimeout * 1000,
    });
  } catch (error) {
    for (const { front } of servers) front.close();
    await health?.close();
    metrics.close();
    await control.close();
    throw error;
  }
  const healthServer = health;

  const openSessions = () => servers.reduce((sum, { smtp }) => sum + smtp.connections.size, 0);

  /**
   * At the connection limit, a newcomer takes the place of the session that has gone longest
   * without progress (and has no transaction open), so sessions that only idle cannot lock real
   * senders out. Only a session idle for a quarter of the envelope timeout qualifies: one that has
   * just connected is still greeting and negotiating TLS, and a flood must not churn through them.
   * False when no session qualifies.
   */
  function evictIdlest(newcomer: string): boolean {
    let idlest: MailbridgeConnection | undefined;
    let oldest = Date.now() - (limits.envelopeTimeout * 1000) / 4;
    for (const { smtp } of servers) {
      for (const connection of smtp.connections) {
        if (!(connection instanceof MailbridgeConnection) || connection.id === newcomer) continue;
        const since = connections.has(connection.id) ? connection.idleSince() : undefined;
        if (since !== undefined && since <= oldest) {
          idlest = connection;
          oldest = since;
        }
      }
    }
    if (!idlest) return false;
    connections.release(idlest.id);
    idlest.refuse(new SessionLimitError('evicted_idle'));
    return true;
  }

  const drain = async () => {
    draining = true;
    for (const { front } of servers) front.close();
    for (const socket of handshaking) socket.destroy();
    // smtp-server answers any further command with 421 and lets a message in progress finish.
    for (const { smtp } of servers) smtp.close();
    if (openSessions() > 0) {
      const finished = new Promise<void>((resolve) => {
        onSessionClosed = () => {
          if (openSessions() === 0) resolve();
        };
      });
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, limits.closeTimeout * 1000);
      });
      await Promise.race([finished, timedOut]);
      clearTimeout(timer);
      for (const { smtp } of servers) {
        for (const connection of smtp.connections) {
          connection.send(421, '4.3.2 Server shutting down, try again later');
          connection.close();
        }
      }
    }
    await policy.settled();
    await target.events.flush();
    // Every accepted message's `received` event is queued by now; write them before exiting.
    await control.close();
    await healthServer.close();
    metrics.close();
  };

  let closing: Promise<void> | undefined;
  return {
    listeners: started,
    healthPort: healthServer.port,
    sessions: openSessions,
    updateTls(key, cert) {
      for (const { smtp } of servers) smtp.updateSecureContext({ key, cert });
    },
    close() {
      closing ??= drain();
      return closing;
    },
  };
}

/**
 * The stop of the listener's process: drains `listener`, then destroys `clients` whatever the drain
 * did. Resolves with the exit code: 1 when the drain failed (messages still in flight were not
 * answered 250, so their senders retry and nothing is lost, but the orchestrator should see a
 * failed stop), else 0.
 */
export async function stopListener(
  listener: Pick<RunningListener, 'close'>,
  clients: readonly { destroy(): void }[],
  logger: Logger,
): Promise<number> {
  let code = 0;
  try {
    await listener.close();
  } catch (error) {
    logger.error('drain failed', { error: error as Error });
    code = 1;
  }
  for (const client of clients) client.destroy();
  return code;
}
