import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerOptions,
  SMTPServerSession,
} from 'smtp-server';
import {
  AuthFailedError,
  AuthRequiredError,
  AuthUnavailableError,
  type Config,
  createLogger,
  createMetrics,
  type ListenerConfig,
  type Logger,
  MessageTooLargeError,
  type Metrics,
  type Route,
  type Router,
  SessionLimitError,
  SmtpError,
  TemporaryFailureError,
  TlsRequiredError,
  TooManyRecipientsError,
} from '../core/index.ts';
import { type ListenerControlOptions, startListenerControl } from './control.ts';
import { type BatchingOptions, SqsEventQueue } from './event-queue.ts';
import { type DnsResolver, SessionFilter } from './filtering/index.ts';
import { type HealthServer, startHealthServer, storageReadiness } from './health.ts';
import { ConnectionLimits } from './limits.ts';
import { ListenerMetrics } from './metrics.ts';
import { translateProxyV2, trustedPeers } from './proxy.ts';
import { MailbridgeConnection, MailbridgeSmtpServer } from './smtp.ts';
import { type Envelope, MemoryBudget, type SpoolTarget, spoolMessage } from './spool.ts';
import type { TlsMaterial } from './tls.ts';

/** Checks one SMTP AUTH user name and password. */
export type AuthVerifier = (user: string, password: string) => boolean | Promise<boolean>;

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

// Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are Node's defaults): forward secrecy, AEAD only.
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Compares in constant time (over digests, so lengths leak nothing either). */
function mapVerifier(users: ReadonlyMap<string, string>): AuthVerifier {
  return (user, password) => {
    const expected = users.get(user);
    return expected !== undefined && timingSafeEqual(digest(expected), digest(password));
  };
}

/** RFC 3848 `with` keyword: ESMTP plus S for TLS and A for AUTH; plain SMTP after HELO. */
function protocolOf(session: SMTPServerSession): string {
  if (session.openingCommand !== 'EHLO') return 'SMTP';
  return `ESMTP${session.secure ? 'S' : ''}${session.user ? 'A' : ''}`;
}

/**
 * Starts one SMTP server per entry of `config.listeners` (mode `mx`, `submission` or
 * `implicit-tls`, each with its session policy) and the health endpoint on `config.health`.
 * A message is answered `250 2.0.0 queued as <id>` only once its raw bytes are in
 * `raw/YYYY/MM/DD/<id>.eml` and its InboundEvent is on the inbound queue; any failure on that path
 * answers `451 4.3.0`.
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
  const verify = typeof options.authUsers === 'function' ? options.authUsers : mapVerifier(options.authUsers);
  const connections = new ConnectionLimits(limits);
  const trustedProxy = trustedPeers(config.trustedProxies);
  const filter = new SessionFilter(config, {
    report: metrics,
    ...(options.resolver ? { resolver: options.resolver } : {}),
  });
  const tlsOf = new WeakMap<SMTPServerSession, { protocol: string; cipher: string }>();
  const inFlight = new Set<Promise<void>>();
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

  const noteRefusal = (session: SMTPServerSession, error: SmtpError) => {
    metrics.rejected(error.reason);
    logger.info('refused', {
      sessionId: session.id,
      remoteAddress: session.remoteAddress,
      reply: error.message,
    });
  };
  const refuse = (error: SmtpError, session: SMTPServerSession, callback: (error: Error) => void) => {
    noteRefusal(session, error);
    callback(error);
  };
  /** A refusal of MAIL FROM or RCPT TO: also in the message log's refusals ("why did my mail bounce?"). */
  const refuseEnvelope = (
    error: SmtpError,
    session: SMTPServerSession,
    attempt: { mailFrom?: string; recipient?: string },
    callback: (error: Error) => void,
  ) => {
    control.refused(session, `${error.responseCode} ${error.message}`, attempt);
    refuse(error, session, callback);
  };

  const envelopeOf = (session: SMTPServerSession): Envelope => {
    const envelope = session.envelope;
    return {
      mailFrom: envelope.mailFrom ? envelope.mailFrom.address : '',
      rcptTo: envelope.rcptTo.map((recipient) => recipient.address),
      helo: session.hostNameAppearsAs || '',
      remoteAddress: session.remoteAddress,
      remotePort: session.remotePort,
      localPort: session.localPort,
      tls: session.secure ? (tlsOf.get(session) ?? null) : null,
      authUser: typeof session.user === 'string' ? session.user : null,
      protocol: protocolOf(session),
    };
  };

  const receive = async (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (error?: Error | null, message?: string) => void,
  ) => {
    // smtp-server resets session.envelope once the callback returns; take it now.
    const envelope = envelopeOf(session);
    const screen = filter.startMessage(session, envelope);
    try {
      const message = await spoolMessage(stream, envelope, target, screen);
      control.received(message, envelope, target.bucket);
      metrics.accepted(message.size);
      logger.info('accepted', {
        messageId: message.id,
        sessionId: session.id,
        size: message.size,
        sha256: message.sha256,
        recipients: envelope.rcptTo.length,
        remoteAddress: envelope.remoteAddress,
        ...(message.bareLf ? { bareLf: true } : {}),
      });
      callback(null, `2.0.0 queued as ${message.id}`);
    } catch (error) {
      const reply =
        error instanceof SmtpError
          ? error
          : new TemporaryFailureError('Local error in processing', 'internal_error', { cause: error });
      if (reply.reason === 's3_failure') metrics.s3Failure();
      if (reply.reason === 'sqs_failure') metrics.sqsFailure();
      // Too large is counted where smtp-server sends its 552 (see MailbridgeSmtpServer).
      if (!(reply instanceof MessageTooLargeError)) metrics.rejected(reply.reason);
      logger.warn('message not accepted', {
        sessionId: session.id,
        remoteAddress: envelope.remoteAddress,
        reply: reply.message,
        error: reply.cause instanceof Error ? reply.cause.message : undefined,
      });
      callback(reply);
    }
  };

  const policy = (mode: ListenerConfig['mode']): SMTPServerOptions => ({
    secure: mode === 'implicit-tls',
    name: config.hostname,
    banner: 'mailbridge',
    key: options.tls.key,
    cert: options.tls.cert,
    minVersion: 'TLSv1.2',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    size: limits.maxMessageBytes,
    // Without it smtp-server only flags an oversized DATA stream and still answers 250.
    rejectOversized: true,
    hideENHANCEDSTATUSCODES: false,
    disabledCommands: mode === 'mx' ? ['AUTH'] : [],
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH is enforced in onMailFrom instead, so the reply can say what is missing (TLS, then AUTH).
    authOptional: true,
    // Only the v1 line translateProxyV2 writes for a trusted peer's v2 header ever reaches it.
    useProxy: config.proxyProtocol,
    // Reverse DNS would delay every greeting; SPF and friends run in the parse function.
    disableReverseLookup: true,
    logger: false,
    socketTimeout: limits.socketTimeout * 1000,

    onConnect(session, callback) {
      const limited = filter.onConnect(session, { authPort: mode !== 'mx' });
      if (limited) return refuse(limited, session, callback);
      let refusal = connections.admit(session.id, session.remoteAddress);
      if (refusal?.reason === 'max_connections' && evictIdlest(session.id)) {
        refusal = connections.admit(session.id, session.remoteAddress);
      }
      if (refusal) return refuse(refusal, session, callback);
      metrics.connection();
      metrics.sessionsOpen(connections.open);
      callback();
    },

    onSecure(socket, session, callback) {
      const tls = socket as TLSSocket;
      tlsOf.set(session, {
        protocol: tls.getProtocol?.() ?? 'unknown',
        cipher: tls.getCipher?.()?.name ?? 'unknown',
      });
      callback();
    },

    onAuth(auth: SMTPServerAuthentication, session, callback) {
      const reply = (error: SmtpError, response: SMTPServerAuthenticationResponse = {}) => {
        metrics.rejected(error.reason);
        logger.info('authentication refused', {
          sessionId: session.id,
          remoteAddress: session.remoteAddress,
          reply: error.message,
        });
        callback(null, { ...response, message: error.message, responseCode: error.responseCode });
      };
      const locked = filter.authLocked(session);
      if (locked) return reply(locked);
      Promise.resolve(verify(auth.username ?? '', auth.password ?? '')).then(
        (ok) => {
          if (!ok) return reply(filter.onAuthFailure(session) ?? new AuthFailedError());
          filter.onAuthSuccess(session);
          callback(null, { user: auth.username });
        },
        (error: unknown) => {
          logger.error('authentication check failed', { sessionId: session.id, error: String(error) });
          reply(new AuthUnavailableError({ cause: error }));
        },
      );
    },

    onMailFrom(address: SMTPServerAddress, session, callback) {
      const attempt = { mailFrom: address.address };
      if (mode === 'submission' && !session.secure)
        return refuseEnvelope(new TlsRequiredError(), session, attempt, callback);
      if (mode !== 'mx' && !session.user)
        return refuseEnvelope(new AuthRequiredError(), session, attempt, callback);
      void filter
        .onMailFrom(session, address.address)
        .then(
          (refusal) => (refusal ? refuseEnvelope(refusal, session, attempt, callback) : callback()),
          callback,
        );
    },

    onRcptTo(address: SMTPServerAddress, session, callback) {
      const recipients = session.envelope.rcptTo;
      const lower = address.address.toLowerCase();
      const repeated = recipients.some((recipient) => recipient.address.toLowerCase() === lower);
      const attempt = { recipient: address.address };
      if (!repeated && recipients.length >= limits.maxRecipients) {
        return refuseEnvelope(new TooManyRecipientsError(limits.maxRecipients), session, attempt, callback);
      }
      let route: Route;
      try {
        route = control.router.resolve(address.address).route;
      } catch (error) {
        if (error instanceof SmtpError)
          return refuseEnvelope(filter.onRcptRefused(session) ?? error, session, attempt, callback);
        // A fault of ours, not the sender's: a temporary reply, so the sending MTA retries.
        logger.error('recipient check failed', { sessionId: session.id, error: error as Error });
        return refuseEnvelope(
          new TemporaryFailureError('Temporary failure, try again later', 'rcpt_error', { cause: error }),
          session,
          attempt,
          callback,
        );
      }
      void filter
        .onRcptTo(session, route)
        .then(
          (refusal) => (refusal ? refuseEnvelope(refusal, session, attempt, callback) : callback()),
          callback,
        );
    },

    onData(stream, session, callback) {
      const work = receive(stream, session, callback);
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
    },

    onClose(session) {
      filter.onClose(session);
      connections.release(session.id);
      metrics.sessionsOpen(connections.open);
      onSessionClosed();
    },
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
      const smtp = new MailbridgeSmtpServer(policy(listener.mode), {
        onOversized: (session, reply) => {
          metrics.rejected('too_large');
          // Before MAIL is accepted it is the SIZE= of MAIL FROM; later, the DATA itself.
          if (!session.envelope.mailFrom) control.refused(session, reply, {});
        },
        policy: {
          envelopeTimeoutMs: limits.envelopeTimeout * 1000,
          maxIdleCommands: limits.maxIdleCommands,
          maxUnauthenticatedCommands: listener.mode === 'mx' ? undefined : limits.maxUnauthenticatedCommands,
        },
        onPolicyRefusal: noteRefusal,
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
    await Promise.allSettled([...inFlight]);
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
