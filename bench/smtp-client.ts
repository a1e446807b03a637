import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

/** One SMTP reply: its code and its lines' text. */
export interface Reply {
  readonly code: number;
  readonly text: string;
}

/** What one message took, in `now()` milliseconds. */
export interface Sent {
  /** When the last byte of DATA was handed to the kernel. */
  readonly lastByteAt: number;
  /** When the final reply arrived. */
  readonly repliedAt: number;
}

/** Epoch milliseconds with sub-millisecond resolution, comparable between processes. */
export const now = (): number => performance.timeOrigin + performance.now();

/**
 * A minimal, fast SMTP client session for load generation: Nagle off (without it small writes
 * wait for delayed ACKs and throughput collapses), MAIL/RCPT/DATA sent as one PIPELINING group
 * (RFC 2920), the body written as one pre-built, dot-stuffed buffer.
 */
export class SmtpSession {
  #socket: Socket | TLSSocket;
  #text = '';
  #lines: string[] = [];
  readonly #replies: Reply[] = [];
  #waiter: ((reply: Reply | Error) => void) | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#attach(socket);
  }

  /** Connects, reads the greeting and sends EHLO (then STARTTLS and EHLO again when asked). */
  static async open(options: { host: string; port: number; starttls?: boolean }): Promise<SmtpSession> {
    const socket = connect({ host: options.host, port: options.port, noDelay: true });
    socket.setNoDelay(true);
    const session = new SmtpSession(socket);
    await session.#expect(220);
    await session.command('EHLO bench.test', 250);
    if (options.starttls) {
      await session.command('STARTTLS', 220);
      await session.#upgrade(options.host);
      await session.command('EHLO bench.test', 250);
    }
    return session;
  }

  #attach(socket: Socket | TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => this.#onData(data));
    socket.on('error', (error) => this.#fail(error));
    socket.on('close', () => this.#fail(new Error('connection closed')));
  }

  async #upgrade(host: string): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('error');
    plain.removeAllListeners('close');
    const secure = tlsConnect({ socket: plain, servername: host, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.#socket = secure;
    this.#attach(secure);
  }

  #onData(data: string): void {
    this.#text += data;
    let end = this.#text.indexOf('\n');
    while (end !== -1) {
      const line = this.#text.slice(0, end).replace(/\r$/, '');
      this.#text = this.#text.slice(end + 1);
      this.#lines.push(line);
      // The last line of a reply has a space (or nothing) after the code.
      if (line.length <= 3 || line[3] === ' ') {
        const reply = { code: Number(line.slice(0, 3)), text: this.#lines.join('\n') };
        this.#lines = [];
        const waiter = this.#waiter;
        this.#waiter = undefined;
        if (waiter) waiter(reply);
        else this.#replies.push(reply);
      }
      end = this.#text.indexOf('\n');
    }
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(error);
  }

  #next(): Promise<Reply> {
    const queued = this.#replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiter = (reply) => (reply instanceof Error ? reject(reply) : resolve(reply));
    });
  }

  async #expect(code: number): Promise<Reply> {
    const reply = await this.#next();
    if (reply.code !== code) throw new Error(`expected ${code}, got ${reply.text}`);
    return reply;
  }

  /** Sends one command and checks its reply code. */
  async command(line: string, code: number): Promise<Reply> {
    this.#socket.write(`${line}\r\n`);
    return this.#expect(code);
  }

  /** Sends one message: `envelope` is the pipelined MAIL/RCPT/DATA group, `body` ends with CRLF.CRLF. */
  async send(envelope: Buffer, body: Buffer): Promise<Sent> {
    this.#socket.write(envelope);
    await this.#expect(250);
    await this.#expect(250);
    await this.#expect(354);
    let lastByteAt = 0;
    this.#socket.write(body, () => {
      lastByteAt = now();
    });
    await this.#expect(250);
    const repliedAt = now();
    return { lastByteAt: lastByteAt || repliedAt, repliedAt };
  }

  /** QUIT, then close. */
  async quit(): Promise<void> {
    try {
      await this.command('QUIT', 221);
    } catch {}
    this.close();
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** The pipelined MAIL FROM, RCPT TO and DATA of one message. */
export function envelopeGroup(to: string): Buffer {
  return Buffer.from(`MAIL FROM:<load@bench.test>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
}

const FILLER_LINE = `${'The quick brown fox jumps over the lazy dog. '.repeat(2).slice(0, 76)}\r\n`;

/**
 * A plain-text message of about `size` bytes with `subject`, already dot-stuffed (no line starts
 * with a dot) and terminated with `CRLF.CRLF`.
 */
export function messageBody(size: number, subject: string, to: string): Buffer {
  const header =
    `From: Load <load@bench.test>\r\nTo: <${to}>\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${subject.replace(/\s+/g, '.')}@bench.test>\r\nDate: ${new Date().toUTCString()}\r\n` +
    'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n';
  const lines = Math.max(1, Math.ceil((size - header.length) / FILLER_LINE.length));
  return Buffer.concat([Buffer.from(header), Buffer.from(FILLER_LINE.repeat(lines)), Buffer.from('.\r\n')]);
}
