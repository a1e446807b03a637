import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import {
  RouteFilteringSchema,
  ScannersConfigSchema,
  spamVerdict,
  virusVerdict,
} from '../../core/filtering/index.ts';
import { CLEAN, countingSink, INFECTED, largeMessage, SPAM } from '../../harness/filtering-messages.ts';
import { type RunningScanner, skipUnless, startClamd, startRspamd } from '../../harness/scanners.ts';
import { ContentScanners } from '../../listener/filtering/index.ts';

const ENVELOPE = {
  mailFrom: 'alice@sender.test',
  rcptTo: ['support@example.test', 'sales@example.test'],
  remoteAddress: '192.0.2.10',
  helo: 'mail.sender.test',
  hostname: 'mail.sender.test',
  queueId: '01JTESTQUEUEID0000000000000',
};
const ROUTE = RouteFilteringSchema.parse({});
const skip = skipUnless('rspamd') || skipUnless('clamd');

function scanners(
  rspamd: RunningScanner | { port: number },
  clamd: RunningScanner | { port: number },
  budget = 5,
) {
  return new ContentScanners(
    ScannersConfigSchema.parse({
      rspamd: { url: `http://127.0.0.1:${rspamd.port}`, maxBytes: 50 * 1024 * 1024 },
      clamd: { host: '127.0.0.1', port: clamd.port, maxBytes: 64 * 1024 * 1024 },
      budget,
      stall: 2,
    }),
  );
}

/** Streams `source` through the scanning tee into a counting stand-in for S3. */
async function scan(content: ContentScanners, source: Readable) {
  const scan = content.start(ENVELOPE);
  const stored = countingSink();
  await pipeline(source, scan.tee, stored);
  return { stored: stored.bytes, ...(await scan.verdicts()) };
}

describe('content scanning against the real rspamd and clamd', { skip }, () => {
  let rspamd: RunningScanner;
  let clamd: RunningScanner;
  let content: ContentScanners;

  before(async () => {
    [rspamd, clamd] = await Promise.all([startRspamd(), startClamd()]);
    console.log(
      `# start-up: rspamd ${rspamd.startupMs.toFixed(0)} ms, clamd ${clamd.startupMs.toFixed(0)} ms`,
    );
    content = scanners(rspamd, clamd);
  });
  after(async () => {
    await Promise.all([rspamd?.stop(), clamd?.stop()]);
  });

  it('scores GTUBE as spam and lets its bytes through to storage unchanged', async () => {
    const result = await scan(content, Readable.from([Buffer.from(SPAM)]));
    assert.equal(result.stored, Buffer.byteLength(SPAM));
    assert.equal(result.spam.status, 'scanned');
    const verdict = spamVerdict(result.spam, ROUTE.spam.threshold);
    assert.equal(verdict.verdict, 'spam');
    assert.ok(verdict.score! >= 15, `GTUBE scores rspamd's reject level, got ${verdict.score}`);
    assert.deepEqual(
      verdict.symbols.map((symbol) => symbol.name),
      ['GTUBE'],
    );
    assert.deepEqual(virusVerdict(result.virus), { verdict: 'clean', names: [] });
  });

  it('finds EICAR in a base64 MIME attachment', async () => {
    // Fed in small pieces, as a slow sender would: the INSTREAM chunks are as DATA arrives.
    const bytes = Buffer.from(INFECTED);
    const pieces = Array.from({ length: Math.ceil(bytes.length / 100) }, (_, i) =>
      bytes.subarray(i * 100, i * 100 + 100),
    );
    const result = await scan(content, Readable.from(pieces));
    assert.deepEqual(virusVerdict(result.virus), {
      verdict: 'infected',
      names: ['Eicar-Test-Signature.UNOFFICIAL'],
    });
    assert.equal(result.stored, bytes.length);
  });

  it('gives a clean message ham and clean', async () => {
    const result = await scan(content, Readable.from([Buffer.from(CLEAN)]));
    const verdict = spamVerdict(result.spam, ROUTE.spam.threshold);
    assert.equal(verdict.verdict, 'ham', JSON.stringify(verdict));
    assert.ok(verdict.score! < 1);
    assert.deepEqual(virusVerdict(result.virus), { verdict: 'clean', names: [] });
  });

  it('scans a 40 MB message without holding it: RSS grows far less than the message', async () => {
    const bytes = 40 * 1024 * 1024;
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const started = performance.now();
    const result = await scan(scanners(rspamd, clamd, 30), largeMessage(bytes));
    clearInterval(sampler);
    const growthMiB = (peak - before) / 2 ** 20;
    console.log(
      `# 40 MiB message: RSS growth ${growthMiB.toFixed(1)} MiB, ${(performance.now() - started).toFixed(0)} ms, spam ${result.spam.status}, virus ${result.virus.status}`,
    );
    assert.equal(result.stored, bytes);
    assert.equal(result.virus.status, 'scanned');
    assert.equal(result.spam.status, 'scanned');
    assert.ok(growthMiB < 32, `RSS grew ${growthMiB.toFixed(1)} MiB for a 40 MiB message`);
  });
});

describe('a scanner that fails never stops the mail', { skip }, () => {
  it('a scanner killed mid-message gives unavailable and the message still streams through whole', async () => {
    const [rspamd, clamd] = await Promise.all([startRspamd(), startClamd()]);
    const content = scanners(rspamd, clamd);
    try {
      const bytes = 12 * 1024 * 1024;
      let killed = false;
      const source = largeMessage(bytes, (sent) => {
        if (!killed && sent > 2 * 1024 * 1024) {
          killed = true;
          rspamd.kill();
          clamd.kill();
        }
      });
      const result = await scan(content, source);
      assert.equal(result.stored, bytes);
      assert.equal(result.spam.status, 'unavailable');
      assert.equal(result.virus.status, 'unavailable');
      assert.equal(spamVerdict(result.spam, 6).verdict, 'unavailable');
      assert.equal(virusVerdict(result.virus).verdict, 'unavailable');
    } finally {
      await Promise.all([rspamd.stop(), clamd.stop()]);
    }
  });
});

describe('scanners that are down, hung or slow', () => {
  let servers: Server[] = [];
  const sockets = new Set<Socket>();
  async function serve(onConnection: (socket: Socket) => void): Promise<number> {
    // Half-open, as clamd is: our zero-length end must not close its side.
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      onConnection(socket);
    }).listen(0, '127.0.0.1');
    servers.push(server);
    await once(server, 'listening');
    return (server.address() as { port: number }).port;
  }
  after(() => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) server.close();
    servers = [];
  });

  it('a scanner at its concurrency cap gives busy at once; its slot frees when a verdict arrives', async () => {
    const port = await serve((socket) => socket.resume());
    const content = new ContentScanners(
      ScannersConfigSchema.parse({ clamd: { port, maxConcurrent: 1 }, budget: 0.3 }),
    );
    const [first, second] = await Promise.all([
      scan(content, Readable.from([Buffer.from(CLEAN)])),
      scan(content, Readable.from([Buffer.from(CLEAN)])),
    ]);
    assert.deepEqual(
      [first.virus, second.virus].map((virus) => virus.status === 'unavailable' && virus.reason).sort(),
      ['busy', 'timeout'],
    );
    const third = await scan(content, Readable.from([Buffer.from(CLEAN)]));
    assert.equal(
      third.virus.status === 'unavailable' && third.virus.reason,
      'timeout',
      'the slot was given back',
    );
  });

  it('a refused connection is unavailable (error) at once', async () => {
    const closed = await serve(() => {});
    servers.at(-1)!.close();
    const result = await scan(
      scanners({ port: closed }, { port: closed }),
      Readable.from([Buffer.from(CLEAN)]),
    );
    assert.deepEqual([result.spam.status, result.virus.status], ['unavailable', 'unavailable']);
    assert.equal(result.virus.status === 'unavailable' && result.virus.reason, 'error');
  });

  it('a scanner that stops reading is cut off after the stall time; the upload goes on', async () => {
    // Accepts and never reads: its socket buffers fill up, then every write waits.
    const port = await serve((socket) => socket.pause());
    const content = new ContentScanners(
      ScannersConfigSchema.parse({
        rspamd: null,
        clamd: { host: '127.0.0.1', port, maxBytes: 64 * 1024 * 1024 },
        budget: 5,
        stall: 0.3,
      }),
    );
    const bytes = 32 * 1024 * 1024;
    const result = await scan(content, largeMessage(bytes));
    assert.equal(result.stored, bytes);
    assert.deepEqual(result.virus.status === 'unavailable' && result.virus.reason, 'stalled');
    assert.deepEqual(result.spam, { status: 'unavailable', reason: 'disabled' });
  });

  it('a scanner that reads everything but never answers is cut off at the budget', async () => {
    const port = await serve((socket) => socket.resume());
    const content = new ContentScanners(
      ScannersConfigSchema.parse({
        rspamd: null,
        clamd: { host: '127.0.0.1', port, maxBytes: 64 * 1024 * 1024 },
        budget: 0.3,
        stall: 2,
      }),
    );
    const started = performance.now();
    const result = await scan(content, Readable.from([Buffer.from(CLEAN)]));
    assert.equal(result.virus.status === 'unavailable' && result.virus.reason, 'timeout');
    assert.ok(performance.now() - started < 3000);
  });
});
