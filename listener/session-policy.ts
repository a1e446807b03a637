import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
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
  type ListenerConfig,
  type Logger,
  MessageTooLargeError,
  type Route,
  SmtpError,
  TemporaryFailureError,
  TlsRequiredError,
  TooManyRecipientsError,
} from '../core/index.ts';
import type { ListenerControl } from './control.ts';
import type { SessionFilter } from './filtering/index.ts';
import type { ConnectionLimits } from './limits.ts';
import type { ListenerMetrics } from './metrics.ts';
import { type Envelope, type SpoolTarget, spoolMessage } from './spool.ts';
import type { TlsMaterial } from './tls.ts';

/** Checks one SMTP AUTH user name and password. */
export type AuthVerifier = (user: string, password: string) => boolean | Promise<boolean>;

/** What the session policy decides with and reports to; the lifecycle (listener.ts) builds it. */
export interface SessionContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: ListenerMetrics;
  readonly control: ListenerControl;
  readonly filter: SessionFilter;
  readonly connections: ConnectionLimits;
  /** SMTP AUTH users with their passwords, or a function that checks them. */
  readonly authUsers: ReadonlyMap<string, string> | AuthVerifier;
  readonly tls: TlsMaterial;
  readonly target: SpoolTarget;
  /** At the connection limit: frees the slot of the idlest session for `newcomer`; whether it did. */
  readonly evictIdlest: (newcomer: string) => boolean;
  /** Told after every session's close (the drain waits on it). */
  readonly sessionClosed: () => void;
}

/** The answers to every SMTP command of one listener, for each mode. */
export interface SessionPolicy {
  /** smtp-server's options for a port in `mode`: its session policy as callbacks. */
  options(mode: ListenerConfig['mode']): SMTPServerOptions;
  /** Counts and logs a refusal that smtp-server sends itself (see MailbridgeSmtpServer). */
  noteRefusal(session: SMTPServerSession, error: SmtpError): void;
  /** Resolves once every message being received has been answered. */
  settled(): Promise<void>;
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
 * The session policy: who may connect, authenticate, send from and to whom, and how DATA is
 * answered. A message is answered `250 2.0.0 queued as <id>` only once its raw bytes are in
 * `raw/YYYY/MM/DD/<id>.eml` and its InboundEvent is on the inbound queue; any failure on that path
 * answers `451 4.3.0`.
 */
export function sessionPolicy(context: SessionContext): SessionPolicy {
  const { config, logger, metrics, control, filter, connections, tls, target } = context;
  const limits = config.limits;
  const verify = typeof context.authUsers === 'function' ? context.authUsers : mapVerifier(context.authUsers);
  const tlsOf = new WeakMap<SMTPServerSession, { protocol: string; cipher: string }>();
  const inFlight = new Set<Promise<void>>();

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
      // Too large is counted and recorded where smtp-server sends its 552 (see MailbridgeSmtpServer).
      if (!(reply instanceof MessageTooLargeError)) {
        metrics.rejected(reply.reason);
        // A 5xx (spam, malware, DMARC, bare LF) bounces the mail: a refusal of each recipient. A 4xx
        // does not: the sending MTA keeps the mail and tries again, and its cause is ours (S3, SQS,
        // the memory budget), in metrics and logs; an outage would only use up the refusal caps.
        if (reply.responseCode >= 500)
          control.refusedMessage(session, `${reply.responseCode} ${reply.message}`);
      }
      logger.warn('message not accepted', {
        sessionId: session.id,
        remoteAddress: envelope.remoteAddress,
        reply: reply.message,
        error: reply.cause instanceof Error ? reply.cause.message : undefined,
      });
      callback(reply);
    }
  };

  const options = (mode: ListenerConfig['mode']): SMTPServerOptions => ({
    secure: mode === 'implicit-tls',
    name: config.hostname,
    banner: 'mailbridge',
    key: tls.key,
    cert: tls.cert,
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
      if (refusal?.reason === 'max_connections' && context.evictIdlest(session.id)) {
        refusal = connections.admit(session.id, session.remoteAddress);
      }
      if (refusal) return refuse(refusal, session, callback);
      metrics.connection();
      metrics.sessionsOpen(connections.open);
      callback();
    },

    onSecure(socket, session, callback) {
      const secured = socket as TLSSocket;
      tlsOf.set(session, {
        protocol: secured.getProtocol?.() ?? 'unknown',
        cipher: secured.getCipher?.()?.name ?? 'unknown',
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
      context.sessionClosed();
    },
  });

  return {
    options,
    noteRefusal,
    settled: async () => {
      await Promise.allSettled([...inFlight]);
    },
  };
}
