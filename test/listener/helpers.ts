import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIPv4, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import ipaddr from 'ipaddr.js';
import { type Config, type InboundEvent, InboundEventSchema } from '../../core/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { PASSWORD, testConfig, testTls, USER } from '../../harness/listener-config.ts';
import { type ListenerOptions, type RunningListener, startListener } from '../../listener/index.ts';

export { PASSWORD, testConfig, testTls, USER } from '../../harness/listener-config.ts';

/** A listener against the test emulator; `port(mode)` gives the bound port of a mode. */
export async function startTestListener(
  emulator: TestEmulator,
  config: Config = testConfig(),
  overrides: Partial<ListenerOptions> = {},
): Promise<RunningListener & { port(mode: 'mx' | 'submission' | 'implicit-tls'): number }> {
  const listener = await startListener({
    config,
    s3: emulator.s3,
    sqs: emulator.sqs,
    bucket: emulator.resources.bucket,
    inboundQueueUrl: emulator.resources.inboundQueueUrl,
    tls: await testTls(),
    authUsers: new Map([[USER, PASSWORD]]),
    ...overrides,
  });
  return Object.assign(listener, {
    port(mode: 'mx' | 'submission' | 'implicit-tls') {
      const bound = listener.listeners.find((entry) => entry.mode === mode);
      if (!bound) throw new Error(`no ${mode} listener`);
      return bound.port;
    },
  });
}

export type TestListener = Awaited<ReturnType<typeof startTestListener>>;

/** A fresh emulator with one listener for the enclosing `describe`, started before and closed after it. */
export function useListener(config: () => Config = testConfig): {
  emulator: TestEmulator;
  listener: TestListener;
  events: EventCollector;
} {
  const fixture = {} as { emulator: TestEmulator; listener: TestListener; events: EventCollector };
  before(async () => {
    fixture.emulator = await startTestEmulator();
    fixture.listener = await startTestListener(fixture.emulator, config());
    fixture.events = new EventCollector(fixture.emulator.sqs, fixture.emulator.resources.inboundQueueUrl);
  });
  after(async () => {
    await fixture.listener.close();
    await fixture.emulator.close();
  });
  return fixture;
}

/** A fresh emulator for the enclosing `describe`, for tests that start listeners of their own. */
export function useEmulator(): { emulator: TestEmulator } {
  const fixture = {} as { emulator: TestEmulator };
  before(async () => {
    fixture.emulator = await startTestEmulator();
  });
  after(async () => {
    await fixture.emulator.close();
  });
  return fixture;
}

/**
 * A fresh emulator, an event collector on its inbound queue and a temporary directory (prefix
 * `prefix`) for the enclosing `describe`; with `tlsFiles`, the directory holds the test TLS pair as
 * `key.pem` and `cert.pem`.
 */
export function useEmulatorDir(
  prefix: string,
  options: { tlsFiles?: boolean } = {},
): { emulator: TestEmulator; events: EventCollector; dir: string } {
  const fixture = {} as { emulator: TestEmulator; events: EventCollector; dir: string };
  before(async () => {
    fixture.emulator = await startTestEmulator();
    fixture.events = new EventCollector(fixture.emulator.sqs, fixture.emulator.resources.inboundQueueUrl);
    fixture.dir = await mkdtemp(join(tmpdir(), prefix));
    if (options.tlsFiles) {
      const tls = await testTls();
      await writeFile(join(fixture.dir, 'key.pem'), tls.key);
      await writeFile(join(fixture.dir, 'cert.pem'), tls.cert);
    }
  });
  after(async () => {
    await fixture.emulator.close();
    await rm(fixture.dir, { recursive: true, force: true });
  });
  return fixture;
}

/** A config document for `listener/main.ts`: one MX listener, health, the TLS files of {@link useEmulatorDir} in `dir`. */
export function processConfig(dir: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    domains: ['example.test'],
    routes: [
      {
        id: 'all',
        match: ['*@example.test'],
        endpoints: ['http://127.0.0.1:1/'],
        secret: { value: 'whsec_eA==' },
      },
    ],
    listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
    health: { host: '127.0.0.1', port: 0 },
    tls: { source: 'files', certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') },
    ...overrides,
  };
}

export interface ListenerProcess {
  readonly child: ChildProcess;
  readonly smtpPort: number;
  readonly healthPort: number;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node listener/main.ts` (node itself, so signals reach it) on `configPath` and reads its bound ports. */
export async function spawnListener(emulator: TestEmulator, configPath: string): Promise<ListenerProcess> {
  const child = spawn(process.execPath, ['listener/main.ts'], {
    env: {
      ...process.env,
      ...emulator.env,
      MAILBRIDGE_CONFIG: configPath,
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_METRICS_DISABLED: 'true',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exit = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, ...(await boundPorts(child)), exit };
}

/** The MX and health ports a `listener/main.ts` process bound, read from its JSON log lines on stdout. */
export async function boundPorts(child: ChildProcess): Promise<{ smtpPort: number; healthPort: number }> {
  let smtpPort = 0;
  let healthPort = 0;
  for await (const line of createInterface({ input: child.stdout! })) {
    const entry = JSON.parse(line) as { message: string; mode?: string; port?: number };
    if (entry.message === 'listening' && entry.mode === 'mx') smtpPort = entry.port!;
    if (entry.message === 'health endpoint') healthPort = entry.port!;
    if (smtpPort && healthPort) break;
  }
  child.stdout!.resume();
  return { smtpPort, healthPort };
}

/** A test message of about `size` bytes, CRLF lines of 76 characters, unique by `tag`. */
export function makeMessage(size: number, tag: string, to = 'someone@example.test'): Buffer {
  const head =
    `From: Sender <sender@sender.test>\r\nTo: <${to}>\r\nSubject: test ${tag}\r\n` +
    `Message-ID: <${tag}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n`;
  const line = `${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(3).slice(0, 74)}\r\n`;
  const body: string[] = [];
  let length = head.length;
  // Leading dots exercise dot-stuffing in every client.
  body.push(`.leading dot ${tag}\r\n`);
  while (length < size) {
    body.push(line);
    length += line.length;
  }
  return Buffer.from(head + body.join(''), 'latin1');
}

/** Splits a stored raw message into our `Received:` header and the rest. */
export function splitTraceHeader(raw: Buffer): { header: string; rest: Buffer } {
  const text = raw.toString('latin1');
  const end = /\r\n(?![ \t])/.exec(text);
  if (!text.startsWith('Received: ') || !end) throw new Error('no Received: header first');
  return { header: text.slice(0, end.index + 2), rest: raw.subarray(end.index + 2) };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function readObject(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await object.Body!.transformToByteArray());
}

export async function listRawKeys(s3: S3Client, bucket: string): Promise<Set<string>> {
  const keys = new Set<string>();
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'raw/', ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) keys.add(object.Key!);
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

/** Reads every InboundEvent off the queue (deleting them) and keeps them by id. */
export class EventCollector {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly events = new Map<string, InboundEvent>();

  constructor(sqs: SQSClient, queueUrl: string) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
  }

  /** Takes whatever is on the queue now; each body must validate against InboundEventSchema. */
  async poll(): Promise<void> {
    for (;;) {
      const batch = await this.#sqs.send(
        new ReceiveMessageCommand({ QueueUrl: this.#queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
      );
      const messages = batch.Messages ?? [];
      if (messages.length === 0) return;
      for (const message of messages) {
        const event = InboundEventSchema.parse(JSON.parse(message.Body!));
        this.events.set(event.id, event);
      }
      await this.#sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.#queueUrl,
          Entries: messages.map((message, index) => ({
            Id: String(index),
            ReceiptHandle: message.ReceiptHandle!,
          })),
        }),
      );
    }
  }

  /** The event of message `id`; it is on the queue before the 250, so one poll must find it. */
  async get(id: string): Promise<InboundEvent> {
    await this.poll();
    const event = this.events.get(id);
    if (!event) throw new Error(`no InboundEvent for ${id}`);
    return event;
  }

  /** Every event so far whose MAIL FROM is `sender`. */
  async from(sender: string): Promise<InboundEvent[]> {
    await this.poll();
    return [...this.events.values()].filter((event) => event.envelope.mailFrom === sender);
  }
}

/** The message id in a `250 2.0.0 queued as <id>` reply. */
export function queuedId(reply: string): string {
  const match = /250 2\.0\.0 queued as ([0-9A-Z]{26})/.exec(reply);
  if (!match) throw new Error(`not a queued reply: ${reply}`);
  return match[1]!;
}

/**
 * A bare SMTP client on a raw socket, to read the exact reply lines that client libraries hide.
 */
export class RawSmtp {
  socket: Socket | TLSSocket;
  #buffer = '';
  #wake: (() => void) | undefined;
  closed = false;

  private constructor(socket: Socket | TLSSocket) {
    // Commands and bodies go out in several writes; Nagle would hold each for the peer's delayed ACK.
    socket.setNoDelay(true);
    this.socket = socket;
    this.#attach(socket);
  }

  #attach(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString('latin1');
      this.#wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
    socket.on('error', () => {});
  }

  /**
   * Connects from `localAddress` (any 127/8 address; 127.0.0.1 by default), sends `proxyHeader`
   * first when given, then (with `tls`) does the TLS handshake of an implicit-TLS port and, unless
   * `greeting` is false, reads the greeting. A connection the server closes before TLS is up
   * resolves with `closed` set.
   */
  static async open(
    port: number,
    options: {
      tls?: boolean;
      greeting?: boolean;
      preamble?: Buffer;
      localAddress?: string;
      proxyHeader?: Buffer;
    } = {},
  ): Promise<RawSmtp> {
    const tcp = netConnect({ host: '127.0.0.1', port, localAddress: options.localAddress ?? '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      tcp.once('connect', () => resolve());
      tcp.once('error', reject);
    });
    if (options.proxyHeader) tcp.write(options.proxyHeader);
    let socket: Socket | TLSSocket = tcp;
    if (options.tls) {
      socket = tlsConnect({ socket: tcp, rejectUnauthorized: false });
      const secure = await new Promise<boolean>((resolve) => {
        socket.once('secureConnect', () => resolve(true));
        socket.once('error', () => resolve(false));
        socket.once('close', () => resolve(false));
      });
      if (!secure) {
        const refused = new RawSmtp(socket);
        refused.closed = true;
        return refused;
      }
    }
    const client = new RawSmtp(socket);
    if (options.preamble) socket.write(options.preamble);
    if (options.greeting !== false) await client.reply();
    return client;
  }

  /** The next complete reply (all its lines, joined by "\n"); "" once the server closed. */
  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.#buffer.split('\r\n');
      const last = lines.findIndex((line) => /^\d{3}(?: |$)/.test(line));
      if (last !== -1) {
        this.#buffer = lines.slice(last + 1).join('\r\n');
        return lines.slice(0, last + 1).join('\n');
      }
      if (this.closed) return '';
      if (Date.now() > deadline) throw new Error(`no reply; buffer: ${JSON.stringify(this.#buffer)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Sends one command line and returns its reply. */
  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** STARTTLS and the handshake; returns the 220 reply. `pipelined` goes out in the same write. */
  async startTls(pipelined = ''): Promise<string> {
    const ready = await this.command(`STARTTLS\r\n${pipelined}`.replace(/\r\n$/, ''));
    if (!ready.startsWith('220')) return ready;
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.#attach(secure);
    return ready;
  }

  /** EHLO, then (optionally) AUTH PLAIN; returns the EHLO reply. */
  async hello(auth?: { user: string; password: string }): Promise<string> {
    const ehlo = await this.command('EHLO client.test');
    if (auth) {
      const token = Buffer.from(`\0${auth.user}\0${auth.password}`).toString('base64');
      const reply = await this.command(`AUTH PLAIN ${token}`);
      if (!reply.startsWith('235')) throw new Error(`AUTH failed: ${reply}`);
    }
    return ehlo;
  }

  /** EHLO, MAIL, RCPT and DATA, leaving the session at `354` for a body sent in pieces. */
  async startData(from: string, to: string): Promise<void> {
    await this.hello();
    await this.command(`MAIL FROM:<${from}>`);
    await this.command(`RCPT TO:<${to}>`);
    const data = await this.command('DATA');
    if (!data.startsWith('354 ')) throw new Error(`DATA refused: ${data}`);
  }

  /** MAIL, RCPT, DATA and the body (dot-stuffed here); returns the final reply. */
  async send(from: string, to: string[], body: Buffer): Promise<string> {
    const mail = await this.command(`MAIL FROM:<${from}>`);
    if (!mail.startsWith('250')) return mail;
    for (const recipient of to) {
      const rcpt = await this.command(`RCPT TO:<${recipient}>`);
      if (!rcpt.startsWith('250')) return rcpt;
    }
    const data = await this.command('DATA');
    if (!data.startsWith('354')) return data;
    this.write(dotStuff(body));
    this.write(body.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n');
    return this.reply(60_000);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** RFC 5321 §4.5.2 transparency: a line starting with "." gets another one. */
export function dotStuff(body: Buffer): Buffer {
  return Buffer.from(body.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}

/** Status and JSON body of the listener's `GET /healthz`. */
export async function healthOf(port: number): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: response.status, body: await response.json() };
}

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const PROXY_V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/**
 * A PROXY protocol v2 header as an NLB sends it (haproxy proxy-protocol.txt §2.2): `PROXY` over TCP
 * from `source` (IPv4 or IPv6) to port 25, with `tlvs` appended; without a source, `LOCAL` (the
 * balancer's own connection).
 */
export function proxyV2Header(source?: { address: string; port: number }, tlvs = Buffer.alloc(0)): Buffer {
  if (!source) return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const port = (value: number) => Buffer.from([value >> 8, value & 0xff]);
  const ipv4 = isIPv4(source.address);
  const bytes = (address: string) => Buffer.from(ipaddr.parse(address).toByteArray());
  const destination = bytes(ipv4 ? '198.51.100.1' : '2001:db8::1');
  const body = Buffer.concat([bytes(source.address), destination, port(source.port), port(25), tlvs]);
  return Buffer.concat([
    PROXY_V2_SIGNATURE,
    Buffer.from([0x21, ipv4 ? 0x11 : 0x21]),
    port(body.length),
    body,
  ]);
}
