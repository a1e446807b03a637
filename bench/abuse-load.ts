/**
 * Hostile loads against the listener, in a process of its own (`fork`): slow senders, idle
 * sessions that hold slots, a legitimate sender measured beside them. Each session binds its own
 * loopback source address (any 127/8 address is loopback on Linux), so per-address and per-network
 * limits see as many clients as the scenario says. The parent drives it through `serve` calls.
 */
import { connect, type Socket } from 'node:net';
import { serve } from './ipc.ts';
import { messageBody, now } from './smtp-client.ts';

const HOST = '127.0.0.1';
const RECIPIENT = 'load@example.test';

/** `count` source addresses, each in a /24 of its own: 127.1.0.1, 127.2.0.1, … */
export function sourceAddresses(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `127.${1 + (i % 250)}.${Math.floor(i / 250)}.1`);
}

/** A raw SMTP session that reads whole replies; never throws on a closed socket. */
class Session {
  readonly socket: Socket;
  #buffer = '';
  #wake: (() => void) | undefined;
  closed = false;

  constructor(port: number, localAddress: string) {
    this.socket = connect({ host: HOST, port, localAddress, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString('latin1');
      this.#wake?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
    this.socket.on('error', () => {});
  }

  /** The next reply's last line, or "" once the server closed. */
  async reply(): Promise<string> {
    for (;;) {
      const lines = this.#buffer.split('\r\n');
      const last = lines.findIndex((line) => /^\d{3}(?: |$)/.test(line));
      if (last !== -1) {
        this.#buffer = lines.slice(last + 1).join('\r\n');
        return lines[last]!;
      }
      if (this.closed) return '';
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  async command(line: string): Promise<string> {
    if (!this.closed) this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** Writes and waits until the kernel took it (so a slow sender really is slow). */
  write(data: Buffer): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  close(): void {
    this.socket.destroy();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How many sessions ended with each reply (its code and enhanced code), "closed" when none came. */
export type Outcomes = Record<string, number>;

function tally(replies: readonly string[]): Outcomes {
  const outcomes: Outcomes = {};
  for (const reply of replies) {
    const key = /^\d{3}(?: \d\.\d{1,3}\.\d{1,3})?/.exec(reply)?.[0] ?? 'closed';
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  return outcomes;
}

/**
 * `sessions` senders spread over `addresses` source addresses, all starting DATA at once and
 * trickling the body at `bytesPerSecond` each, `chunkBytes` at a time, for `durationMs`, then
 * ending it; returns the final replies.
 */
async function slowSenders(args: {
  port: number;
  sessions: number;
  addresses: number;
  bytesPerSecond: number;
  chunkBytes: number;
  durationMs: number;
}): Promise<{ outcomes: Outcomes; seconds: number }> {
  const sources = sourceAddresses(args.addresses);
  const started = now();
  const tickMs = (1000 * args.chunkBytes) / args.bytesPerSecond;
  const chunk = messageBody(args.chunkBytes, 'slow', RECIPIENT).subarray(0, -3);
  const replies = await Promise.all(
    Array.from({ length: args.sessions }, async (_, i) => {
      const session = new Session(args.port, sources[i % sources.length]!);
      try {
        const greeting = await session.reply();
        if (!greeting.startsWith('220')) return greeting;
        await session.command('EHLO slow.bench.test');
        await session.command('MAIL FROM:<slow@bench.test>');
        await session.command(`RCPT TO:<${RECIPIENT}>`);
        const data = await session.command('DATA');
        if (!data.startsWith('354')) return data;
        const deadline = started + args.durationMs;
        while (now() < deadline && !session.closed) {
          await session.write(chunk);
          await sleep(tickMs);
        }
        return await session.command('\r\n.');
      } finally {
        session.close();
      }
    }),
  );
  return { outcomes: tally(replies), seconds: (now() - started) / 1000 };
}

let holders: Session[] = [];
let noops: NodeJS.Timeout | undefined;

/**
 * Opens `sessions` connections over `addresses` source addresses that greet, say EHLO and then
 * only send NOOP every `noopEveryMs`; returns how many got in. They stay until `releaseIdle`.
 */
async function holdIdle(args: {
  port: number;
  sessions: number;
  addresses: number;
  noopEveryMs: number;
}): Promise<{ greeted: number }> {
  const sources = sourceAddresses(args.addresses);
  let greeted = 0;
  for (let at = 0; at < args.sessions; at += 50) {
    const batch = Array.from(
      { length: Math.min(50, args.sessions - at) },
      (_, i) => new Session(args.port, sources[(at + i) % sources.length]!),
    );
    await Promise.all(
      batch.map(async (session) => {
        if ((await session.reply()).startsWith('220')) {
          greeted++;
          await session.command('EHLO idle.bench.test');
        }
      }),
    );
    holders.push(...batch);
  }
  noops = setInterval(() => {
    for (const session of holders) if (!session.closed) session.socket.write('NOOP\r\n');
  }, args.noopEveryMs);
  return { greeted };
}

/** Closes the idle sessions; returns how many the server had closed already. */
function releaseIdle(): { closedByServer: number } {
  clearInterval(noops);
  const closedByServer = holders.filter((session) => session.closed).length;
  for (const session of holders) session.close();
  holders = [];
  return { closedByServer };
}

/** One ordinary message from `localAddress`; returns the greeting and the final reply. */
async function legitimate(args: { port: number; localAddress: string }) {
  const session = new Session(args.port, args.localAddress);
  const started = now();
  try {
    const greeting = await session.reply();
    if (!greeting.startsWith('220')) return { greeting, reply: '', ms: now() - started };
    await session.command('EHLO legit.bench.test');
    await session.command('MAIL FROM:<legit@bench.test>');
    await session.command(`RCPT TO:<${RECIPIENT}>`);
    await session.command('DATA');
    session.socket.write(messageBody(2048, 'legit', RECIPIENT));
    return { greeting, reply: await session.reply(), ms: now() - started };
  } finally {
    session.close();
  }
}

serve({ slowSenders, holdIdle, releaseIdle, legitimate });
