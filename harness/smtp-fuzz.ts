import { connect as netConnect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

/** A seeded PRNG (mulberry32): the same seed gives the same sessions, so a failure reproduces. */
export interface Rng {
  readonly seed: number;
  /** In [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
}

export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(items.length)]!,
    bytes: (n) => {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

/** Which listener port a session talks to. */
export type FuzzTarget = 'mx' | 'submission' | 'implicit-tls';

/**
 * One step of a session: `send` writes bytes (then, with `reply`, waits for a reply line or a short
 * quiet spell), `tls` upgrades the socket when the last reply was `220` to STARTTLS, `close` ends
 * the session politely (`end`) or abruptly (`destroy`, also mid-line or mid-DATA).
 */
export type FuzzStep =
  | { readonly send: Buffer; readonly reply: boolean }
  | { readonly tls: true }
  | { readonly close: 'end' | 'destroy' };

export interface FuzzSession {
  readonly index: number;
  readonly target: FuzzTarget;
  /** Written as soon as the connection is up, before the greeting. */
  readonly early?: Buffer;
  readonly steps: readonly FuzzStep[];
}

const OURS = ['example.test', 'EXAMPLE.TEST', 'strict.test'];
const FOREIGN = ['other.test', 'gmail.test', 'example.test.other.test', '[127.0.0.1]', 'localhost'];

function line(text: string | Buffer): Buffer {
  return Buffer.concat([typeof text === 'string' ? Buffer.from(text, 'latin1') : text, Buffer.from('\r\n')]);
}

function b64(text: string): string {
  return Buffer.from(text, 'latin1').toString('base64');
}

/** Noise for a token: 8-bit, NUL, CR/LF alone, overlong, or empty. */
function garbage(rng: Rng): Buffer {
  switch (rng.int(6)) {
    case 0:
      return rng.bytes(1 + rng.int(64));
    case 1:
      return Buffer.from(`a\0b${'\0'.repeat(rng.int(4))}`, 'latin1');
    case 2:
      return Buffer.from('x\ry\nz', 'latin1');
    case 3:
      return Buffer.alloc(rng.chance(0.5) ? 1000 + rng.int(4000) : 16_000 + rng.int(8000), 'A');
    case 4:
      return Buffer.from('\u00e9\u00e8\u00ff\u0080', 'latin1');
    default:
      return Buffer.alloc(0);
  }
}

function address(rng: Rng, foreign = 0.15): string {
  const local = rng.pick(['someone', 'a', 'known', 'user+tag', 'x.y', '"q@uoted"', 'ünï', 'postmaster']);
  return `${local}@${rng.chance(foreign) ? rng.pick(FOREIGN) : rng.pick(OURS)}`;
}

function mailFrom(rng: Rng): Buffer {
  const forms = [
    () => `MAIL FROM:<sender${rng.int(1000)}@sender.test>`,
    () => 'MAIL FROM:<>',
    () => `MAIL FROM:<s@sender.test> SIZE=${rng.pick([0, 100, 1_000_000_000, -1, 'abc'])}`,
    () => 'MAIL FROM:<s@sender.test> BODY=8BITMIME SMTPUTF8',
    () => 'MAIL FROM:<s@sender.test> BODY=BINARYMIME',
    () => 'MAIL FROM:<s@sender.test> RET=FULL ENVID=x+2Bz',
    () => 'MAIL FROM: <spaced@sender.test>',
    () => 'MAIL FROM:s@sender.test',
    () => 'MAIL FROM:<unterminated@sender.test',
    () => 'MAIL FROM:<@route.test:s@sender.test>',
    () => 'MAIL TO:<wrong@sender.test>',
    () => 'mail from:<lower@sender.test>',
  ];
  if (rng.chance(0.1))
    return line(Buffer.concat([Buffer.from('MAIL FROM:<'), garbage(rng), Buffer.from('>')]));
  return line(rng.pick(forms)());
}

function rcptTo(rng: Rng): Buffer {
  if (rng.chance(0.1)) return line(Buffer.concat([Buffer.from('RCPT TO:<'), garbage(rng), Buffer.from('>')]));
  const forms = [
    () => `RCPT TO:<${address(rng)}>`,
    () => `RCPT TO:<${address(rng)}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test`,
    () => `RCPT TO:<user%other.test@${rng.pick(OURS)}>`,
    () => `RCPT TO:<@${rng.pick(OURS)}:user@other.test>`,
    () => 'RCPT TO:<postmaster>',
    () => 'RCPT TO:',
    () => 'RCPT FROM:<x@example.test>',
  ];
  return line(rng.pick(forms)());
}

/** A DATA body: mostly mail-like, with NULs, 8-bit bytes, bare CR/LF, smuggling-like dots, long lines. */
function body(rng: Rng): Buffer {
  const parts: Buffer[] = [Buffer.from(`Subject: fuzz ${rng.int(1e9)}\r\nFrom: <f@sender.test>\r\n\r\n`)];
  const lines = rng.int(40);
  for (let i = 0; i < lines; i++) {
    switch (rng.int(10)) {
      case 0:
        parts.push(rng.bytes(rng.int(200)), Buffer.from('\r\n'));
        break;
      case 1:
        parts.push(
          Buffer.from(rng.pick(['x\n.\nMAIL FROM:<smuggled@evil.test>\r\n', 'y\r.\r', 'z\n.\r\n', '.\r\n.'])),
        );
        break;
      case 2:
        parts.push(
          Buffer.alloc(rng.chance(0.9) ? rng.int(2000) : 100_000 + rng.int(100_000), 'L'),
          Buffer.from('\r\n'),
        );
        break;
      case 3:
        parts.push(Buffer.from('..leading dot\r\n'));
        break;
      default:
        parts.push(Buffer.from(`line ${i} of the body with some text\r\n`));
    }
  }
  return Buffer.concat(parts);
}

/** A body ended properly, cut off, or never ended (the session then closes mid-DATA). */
function dataSteps(rng: Rng, steps: FuzzStep[]): void {
  steps.push({ send: line('DATA'), reply: true });
  const content = body(rng);
  const ending = rng.int(10);
  if (ending < 7) {
    steps.push({ send: Buffer.concat([content, Buffer.from('\r\n.\r\n')]), reply: true });
  } else if (ending < 9) {
    steps.push({ send: content.subarray(0, rng.int(content.length + 1)), reply: false });
    steps.push({ close: 'destroy' });
  } else {
    // A lone dot in a pipelined tail: RFC 2920 lets the client pipeline after the final dot.
    steps.push({ send: Buffer.concat([content, Buffer.from('\r\n.\r\nRSET\r\nNOOP\r\n')]), reply: true });
  }
}

function bdatSteps(rng: Rng, steps: FuzzStep[]): void {
  const chunk = rng.bytes(rng.int(500));
  const size = rng.chance(0.8) ? chunk.length : rng.int(1_000_000);
  steps.push({
    send: Buffer.concat([line(`BDAT ${size}${rng.chance(0.5) ? ' LAST' : ''}`), chunk]),
    reply: true,
  });
}

function authSteps(rng: Rng, steps: FuzzStep[]): void {
  const forms = [
    () => line(`AUTH PLAIN ${b64(`\0alice\0guess${rng.int(100)}`)}`),
    () => line(`AUTH PLAIN ${rng.pick(['!!!!', '====', 'AAAA====', 'Zm9v', b64('\0\0\0'), ''])}`),
    () => line(`AUTH LOGIN ${rng.pick([b64('alice'), '%%%', ''])}`),
    () => line(`AUTH ${rng.pick(['CRAM-MD5', 'XOAUTH2', 'GSSAPI', 'plain', ''])}`),
    () => line(b64(rng.bytes(rng.int(600)).toString('latin1'))),
    () => line('*'),
    () => line(`AUTH PLAIN ${b64(`\0alice\0${'p'.repeat(20_000)}`)}`),
  ];
  steps.push({ send: rng.pick(forms)(), reply: true });
  if (rng.chance(0.4)) steps.push({ send: line(rng.chance(0.5) ? '*' : b64('secret')), reply: true });
}

/** One command (or a small group) of the grammar, valid or broken. */
function command(rng: Rng, steps: FuzzStep[]): void {
  const roll = rng.int(100);
  if (roll < 12)
    steps.push({
      send: line(rng.pick(['EHLO client.test', 'HELO client.test', 'EHLO [127.0.0.1]', 'EHLO'])),
      reply: true,
    });
  else if (roll < 15)
    steps.push({ send: line(Buffer.concat([Buffer.from('EHLO '), garbage(rng)])), reply: true });
  else if (roll < 27) steps.push({ send: mailFrom(rng), reply: true });
  else if (roll < 42) steps.push({ send: rcptTo(rng), reply: true });
  else if (roll < 46) {
    // A huge RCPT list, pipelined in one write (over the 100 recipient limit now and then).
    const count = 20 + rng.int(150);
    const lines = Array.from({ length: count }, (_, i) => `RCPT TO:<r${i}@example.test>\r\n`).join('');
    steps.push({ send: Buffer.from(lines), reply: true });
  } else if (roll < 56) dataSteps(rng, steps);
  else if (roll < 59) bdatSteps(rng, steps);
  else if (roll < 66) {
    steps.push({ send: line(rng.chance(0.8) ? 'STARTTLS' : 'STARTTLS now'), reply: true });
    if (rng.chance(0.7)) steps.push({ tls: true });
  } else if (roll < 70) {
    // STARTTLS with plaintext pipelined behind it (command injection).
    steps.push({
      send: Buffer.from('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<v@example.test>\r\n'),
      reply: true,
    });
    if (rng.chance(0.7)) steps.push({ tls: true });
  } else if (roll < 77) authSteps(rng, steps);
  else if (roll < 85) {
    steps.push({
      send: line(
        rng.pick([
          'RSET',
          'NOOP',
          'VRFY postmaster',
          'EXPN list',
          'HELP',
          'NOOP x',
          'TURN',
          'ETRN x',
          'XCLIENT ADDR=1.2.3.4',
          'XFORWARD NAME=x',
          'QUIT',
        ]),
      ),
      reply: true,
    });
  } else if (roll < 90) {
    // Several commands in one write (PIPELINING), with a mistake somewhere now and then.
    const group = [mailFrom(rng), rcptTo(rng), rcptTo(rng), ...(rng.chance(0.3) ? [line('DATA')] : [])];
    steps.push({ send: Buffer.concat(group), reply: true });
  } else if (roll < 95) steps.push({ send: line(garbage(rng)), reply: true });
  else if (roll < 97) {
    // An overlong command line, past the 16 KB limit or just under.
    steps.push({
      send: line(Buffer.alloc(rng.chance(0.5) ? 16_500 + rng.int(4000) : 15_000, 'C')),
      reply: true,
    });
  } else if (roll < 99) {
    // A partial command and an abrupt close mid-line.
    steps.push({
      send: Buffer.from(rng.pick(['MAIL FROM:<half', 'EHL', 'RCPT TO:<x@example.test>\r\nDA'])),
      reply: false,
    });
    steps.push({ close: 'destroy' });
  } else steps.push({ send: Buffer.from(rng.pick(['\r\n', '\n', '\r', ' \r\n', '\0\r\n'])), reply: true });
}

/** Mostly-valid mail: a well-formed transaction that a mutation may break at any step. */
function transaction(rng: Rng, target: FuzzTarget, steps: FuzzStep[]): boolean {
  const maybeNoise = () => {
    if (rng.chance(0.12)) command(rng, steps);
    return 'close' in steps[steps.length - 1]!;
  };
  steps.push({ send: line('EHLO client.test'), reply: true });
  if (target === 'submission' || (target === 'mx' && rng.chance(0.25))) {
    steps.push({ send: line('STARTTLS'), reply: true }, { tls: true });
    steps.push({ send: line('EHLO client.test'), reply: true });
  }
  if (target !== 'mx') {
    const password = rng.chance(0.85) ? 'correct horse battery staple' : 'wrong';
    steps.push({ send: line(`AUTH PLAIN ${b64(`\0alice\0${password}`)}`), reply: true });
  }
  const messages = 1 + rng.int(3);
  for (let m = 0; m < messages; m++) {
    if (maybeNoise()) return true;
    const recipients = Array.from({ length: 1 + rng.int(4) }, () => `RCPT TO:<${address(rng, 0.05)}>\r\n`);
    if (rng.chance(0.3)) {
      // RFC 2920: MAIL, RCPTs and DATA in one write.
      steps.push({
        send: Buffer.from(`MAIL FROM:<m${m}@sender.test>\r\n${recipients.join('')}DATA\r\n`),
        reply: true,
      });
    } else {
      steps.push({ send: line(`MAIL FROM:<m${m}@sender.test>`), reply: true });
      for (const rcpt of recipients) steps.push({ send: Buffer.from(rcpt), reply: true });
      if (maybeNoise()) return true;
      steps.push({ send: line('DATA'), reply: true });
    }
    const content = body(rng);
    if (rng.chance(0.9))
      steps.push({ send: Buffer.concat([content, Buffer.from('\r\n.\r\n')]), reply: true });
    else {
      steps.push(
        { send: content.subarray(0, rng.int(content.length + 1)), reply: false },
        { close: 'destroy' },
      );
      return true;
    }
  }
  return false;
}

/** Session `index` of the run seeded `seed`; regenerated exactly from (seed, index). */
export function generateSession(seed: number, index: number): FuzzSession {
  const rng = createRng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const target: FuzzTarget = rng.chance(0.7) ? 'mx' : rng.chance(0.5) ? 'submission' : 'implicit-tls';
  const steps: FuzzStep[] = [];
  // A client that talks before the greeting gets 421 "You talk too soon".
  const early = rng.chance(0.02) ? { early: line('EHLO early.test') } : {};
  if (rng.chance(0.5)) {
    if (transaction(rng, target, steps)) return { index, target, steps, ...early };
  } else {
    const length = 1 + rng.int(14);
    for (let i = 0; i < length; i++) {
      command(rng, steps);
      if ('close' in steps[steps.length - 1]!) return { index, target, steps, ...early };
    }
  }
  if (rng.chance(0.3)) steps.push({ send: line('QUIT'), reply: true });
  steps.push({ close: rng.chance(0.7) ? 'end' : 'destroy' });
  return { index, target, steps, ...early };
}

/** What running one session saw; `refused` (ECONNREFUSED) means nothing was listening. */
export interface FuzzSessionResult {
  readonly replies: number;
  /** The last reply read before the session ended. */
  readonly lastReply: string;
  readonly refused: boolean;
  readonly timedOut: boolean;
}

const REPLY_END = /(?:^|\r\n)\d{3}(?: [^\r\n]*)?\r\n$/;

/**
 * Runs one session on 127.0.0.1. Every wait is bounded by `replyTimeoutMs`; the session always ends
 * with the socket destroyed, whatever the server did.
 */
export async function runSession(
  session: FuzzSession,
  ports: Readonly<Record<FuzzTarget, number>>,
  replyTimeoutMs = 3000,
): Promise<FuzzSessionResult> {
  const port = ports[session.target];
  let socket: Socket | TLSSocket =
    session.target === 'implicit-tls'
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : netConnect({ host: '127.0.0.1', port });
  let buffer = '';
  let closed = false;
  let refused = false;
  let replies = 0;
  let timedOut = false;
  let wake: (() => void) | undefined;
  const attach = (s: Socket | TLSSocket) => {
    s.on('data', (chunk: Buffer) => {
      buffer = (buffer + chunk.toString('latin1')).slice(-4096);
      wake?.();
    });
    s.on('close', () => {
      closed = true;
      wake?.();
    });
    s.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') refused = true;
    });
  };
  attach(socket);
  if (session.early) socket.write(session.early);
  const waitFor = (done: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      if (done()) return resolve(true);
      const timer = setTimeout(() => {
        wake = undefined;
        resolve(false);
      }, ms);
      wake = () => {
        if (!done()) return;
        clearTimeout(timer);
        wake = undefined;
        resolve(true);
      };
    });
  const awaitReply = async () => {
    const got = await waitFor(() => closed || REPLY_END.test(buffer), replyTimeoutMs);
    if (!got) timedOut = true;
    if (REPLY_END.test(buffer)) replies++;
    const last = buffer;
    buffer = '';
    return last;
  };
  try {
    // Data comes only after the handshake on implicit TLS, so the greeting marks both.
    const connected = await waitFor(() => closed || buffer.length > 0, replyTimeoutMs);
    if (!connected || closed) return { replies, lastReply: '', refused, timedOut: !connected };
    let last = await awaitReply();
    for (const step of session.steps) {
      if (closed) break;
      if ('send' in step) {
        socket.write(step.send);
        if (step.reply) last = await awaitReply();
      } else if ('tls' in step) {
        if (!/(?:^|\n)220 /.test(last) || session.target === 'implicit-tls') continue;
        const plain = socket as Socket;
        plain.removeAllListeners('data');
        socket = tlsConnect({ socket: plain, rejectUnauthorized: false });
        attach(socket);
        const upgraded = socket as TLSSocket;
        const secure = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), replyTimeoutMs);
          upgraded.once('secureConnect', () => {
            clearTimeout(timer);
            resolve(true);
          });
          upgraded.once('close', () => {
            clearTimeout(timer);
            resolve(false);
          });
        });
        if (!secure) break;
      } else if (step.close === 'end') {
        socket.end();
        await waitFor(() => closed, replyTimeoutMs);
      } else break;
    }
    return { replies, lastReply: last, refused, timedOut };
  } finally {
    socket.destroy();
  }
}
