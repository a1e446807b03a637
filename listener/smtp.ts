import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';

// An RFC 3463 status code at the start of a reply text.
const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * A connection whose replies keep the enhanced status code our errors carry. With
 * ENHANCEDSTATUSCODES on, smtp-server prefixes every reply with a code from a fixed map (every
 * 550 becomes 5.1.1, every 452 4.2.2), which would turn `550 5.7.1 Relaying denied` into
 * `550 5.1.1 5.7.1 Relaying denied`. Texts that bring their own code are sent as they are.
 */
class EnhancedCodeConnection extends SMTPConnection {
  readonly #onOversized: () => void;

  constructor(
    server: SMTPServer,
    socket: Socket | TLSSocket,
    options: SMTPConnectionOptions | null | undefined,
    onOversized: () => void,
  ) {
    super(server, socket, options);
    this.#onOversized = onOversized;
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    // smtp-server refuses SIZE= at MAIL FROM and oversized DATA itself; this is where we see it.
    if (context === 'MESSAGE_TOO_BIG') this.#onOversized();
    super.send(code, data, typeof data === 'string' && ENHANCED_CODE.test(data) ? false : context);
  }
}

/** Hooks of {@link MailbridgeSmtpServer} beyond smtp-server's own. */
export interface SmtpServerHooks {
  /** A message was refused for its size, declared (SIZE=) or actual. */
  readonly onOversized: () => void;
}

/**
 * smtp-server with {@link EnhancedCodeConnection} sessions. `connect` repeats what
 * `SMTPServer.connect` does (smtp-server 3.21), with our connection class.
 */
export class MailbridgeSmtpServer extends SMTPServer {
  readonly #hooks: SmtpServerHooks;

  constructor(options: SMTPServerOptions, hooks: SmtpServerHooks) {
    super(options);
    this.#hooks = hooks;
  }

  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new EnhancedCodeConnection(this, socket, socketOptions, this.#hooks.onOversized);
    this.connections.add(connection);
    connection.on('error', (error: Error) => this.emit('error', error));
    connection.on('connect', (info) => this.emit('connect', info));
    connection.init();
  }
}
