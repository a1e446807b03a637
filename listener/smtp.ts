import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import { EnvelopeTimeoutError, SessionLimitError, type SmtpError } from '../core/index.ts';

// An RFC 3463 status code at the start of a reply text.
const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

// Commands that move a session towards a message; any other (NOOP, RSET, HELP, VRFY, EXPN, an
// unknown verb) only keeps the line busy.
const PROGRESS_COMMANDS = new Set(['EHLO', 'HELO', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'QUIT']);

/** What a session must do to keep its slot, on top of smtp-server's own limits. */
export interface SessionPolicy {
  /** From connect or the end of the last message to DATA; NOOP, RSET… do not extend it. */
  readonly envelopeTimeoutMs: number;
  /** Commands outside {@link PROGRESS_COMMANDS} before the first message or between two. */
  readonly maxIdleCommands: number;
  /** Commands before AUTH succeeds (AUTH not counted); undefined where there is no AUTH. */
  readonly maxUnauthenticatedCommands: number | undefined;
}

/** Hooks of {@link MailbridgeSmtpServer} beyond smtp-server's own. */
export interface SmtpServerHooks {
  /** A message was refused for its size, declared (SIZE=) or actual; `reply` as sent. */
  readonly onOversized: (session: SMTPServerSession, reply: string) => void;
  readonly policy: SessionPolicy;
  /** The policy closed a session; its reply is sent. */
  readonly onPolicyRefusal: (session: SMTPServerSession, error: SmtpError) => void;
}

/**
 * One SMTP session with the replies and the session policy of mailbridge.
 *
 * Replies keep the enhanced status code our errors carry. With ENHANCEDSTATUSCODES on,
 * smtp-server prefixes every reply with a code from a fixed map (every 550 becomes 5.1.1, every
 * 452 4.2.2), which would turn `550 5.7.1 Relaying denied` into `550 5.1.1 5.7.1 Relaying denied`.
 * Texts that bring their own code are sent as they are.
 *
 * The policy ({@link SessionPolicy}) closes with `421` a session that holds its slot without
 * sending mail: smtp-server's idle timeout is reset by any command, so a NOOP now and then would
 * keep a session for ever, and with `authOptional` (AUTH is enforced at MAIL FROM instead) its cap
 * on commands before AUTH is off.
 */
export class MailbridgeConnection extends SMTPConnection {
  readonly #hooks: SmtpServerHooks;
  /** When the session connected or its last message ended. */
  #since = Date.now();
  #messages = 0;
  #idleCommands = 0;
  #unauthenticatedCommands = 0;
  #deadline: NodeJS.Timeout | undefined;

  constructor(
    server: SMTPServer,
    socket: Socket | TLSSocket,
    options: SMTPConnectionOptions | null | undefined,
    hooks: SmtpServerHooks,
  ) {
    super(server, socket, options);
    this.#hooks = hooks;
  }

  override init(): void {
    super.init();
    this.#arm(this.#hooks.policy.envelopeTimeoutMs);
  }

  /**
   * When the session last made progress (connected or finished a message), or undefined while a
   * transaction is open (MAIL accepted, DATA running) or the session is closing.
   */
  idleSince(): number | undefined {
    if (this._closing || this._closed || this._dataStream || this.session.envelope?.mailFrom)
      return undefined;
    return this.#since;
  }

  /** Closes the session with `error` as its last reply. */
  refuse(error: SmtpError): void {
    clearTimeout(this.#deadline);
    this.#hooks.onPolicyRefusal(this.session, error);
    // A 421 reply makes smtp-server close the connection.
    this.send(error.responseCode, error.message);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    // smtp-server refuses SIZE= at MAIL FROM and oversized DATA itself; this is where we see it.
    if (context === 'MESSAGE_TOO_BIG') this.#hooks.onOversized(this.session, `${code} 5.3.4 ${data}`);
    super.send(code, data, typeof data === 'string' && ENHANCED_CODE.test(data) ? false : context);
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // Before the greeting and during a TLS handshake smtp-server answers (or drops) it itself.
    const refusal = this._ready && !this._upgrading ? this.#count(command) : undefined;
    if (refusal) this.refuse(refusal);
    else super._onCommand(command, callback);
  }

  override _resetSession(): void {
    super._resetSession();
    // smtp-server counts a transaction when the reply to its DATA is sent, then resets.
    if (this._transactionCounter === this.#messages) return;
    this.#messages = this._transactionCounter;
    this.#since = Date.now();
    this.#idleCommands = 0;
  }

  override _onClose(): void {
    clearTimeout(this.#deadline);
    super._onClose();
  }

  #count(command: Buffer): SmtpError | undefined {
    // A continuation line of an AUTH exchange is not a command.
    if (this._nextHandler) return undefined;
    const name = (command.toString('latin1').split(' ', 1)[0] ?? '').toUpperCase();
    const { maxIdleCommands, maxUnauthenticatedCommands } = this.#hooks.policy;
    if (maxUnauthenticatedCommands !== undefined && !this.session.user && name !== 'AUTH') {
      this.#unauthenticatedCommands += 1;
      if (this.#unauthenticatedCommands > maxUnauthenticatedCommands) {
        return new SessionLimitError('unauthenticated_commands');
      }
    }
    if (!PROGRESS_COMMANDS.has(name)) {
      this.#idleCommands += 1;
      if (this.#idleCommands > maxIdleCommands) {
        return new SessionLimitError('idle_commands');
      }
    }
    return undefined;
  }

  #arm(ms: number): void {
    clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => this.#checkDeadline(), ms);
    this.#deadline.unref();
  }

  #checkDeadline(): void {
    if (this._closing || this._closed) return;
    const timeoutMs = this.#hooks.policy.envelopeTimeoutMs;
    if (this._dataStream) {
      // The body and the reply to it are bounded by socketTimeout and the storage timeouts instead.
      this.#arm(timeoutMs);
      return;
    }
    const left = this.#since + timeoutMs - Date.now();
    if (left > 0) this.#arm(left);
    else this.refuse(new EnvelopeTimeoutError(timeoutMs / 1000));
  }
}

/**
 * smtp-server with {@link MailbridgeConnection} sessions. `connect` repeats what
 * `SMTPServer.connect` does (smtp-server 3.21), with our connection class.
 */
export class MailbridgeSmtpServer extends SMTPServer {
  readonly #hooks: SmtpServerHooks;

  constructor(options: SMTPServerOptions, hooks: SmtpServerHooks) {
    super(options);
    this.#hooks = hooks;
  }

  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new MailbridgeConnection(this, socket, socketOptions, this.#hooks);
    this.connections.add(connection);
    connection.on('error', (error: Error) => this.emit('error', error));
    connection.on('connect', (info) => this.emit('connect', info));
    connection.init();
  }
}
