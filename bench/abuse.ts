/**
 * `node bench/abuse.ts [--quick] [scenario…]`: the listener under hostile loads, each figure next to
 * a reference measured in the same run. Scenarios (all by default):
 *
 * - `slow`: 300 senders from 15 addresses trickle one message each, 64 KiB every 4 s, for 60 s.
 *   RSS growth and memory held of the listener against the bare smtp-server sink (which holds
 *   nothing but its sessions), and the replies.
 * - `idle`: as many sessions as the listener has slots greet and then only send NOOP every 20 s;
 *   20 s later one ordinary sender. Its reply, against the same sender on an unloaded listener.
 * - `hang`: S3 holds every PutObject for 120 s (the fault proxy in front of the emulator). How long
 *   an ordinary sender waits for its reply, and which, against the same sender with S3 answering.
 *
 * Prints a Markdown table; asserts nothing.
 */

import { startFaultProxy } from '../harness/fault-proxy.ts';
import type { Outcomes } from './abuse-load.ts';
import { memoryOf, resetPeak, Worker } from './ipc.ts';
import { type RunningServer, startEmulatorProcess, startServer } from './servers.ts';

const quick = process.argv.includes('--quick');
const wanted = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const runs = (name: string) => wanted.length === 0 || wanted.includes(name);
const PLAN = quick
  ? {
      slow: { sessions: 60, addresses: 3, bytesPerSecond: 16_384, chunkBytes: 65_536, durationMs: 10_000 },
      idle: 50,
      hangMs: 30_000,
    }
  : {
      slow: { sessions: 300, addresses: 15, bytesPerSecond: 16_384, chunkBytes: 65_536, durationMs: 60_000 },
      idle: 1000,
      hangMs: 120_000,
    };

const log = (line: string) => console.error(`[abuse] ${line}`);
const load = new Worker('./abuse-load.ts');
await load.ready;

const MiB = 1024 * 1024;

/**
 * Peak RSS over a run (VmHWM, reset just before), the RSS before it, what `run` returned, and the
 * memory held (heap and buffers after a full collection) `liveAfterMs` into the run.
 */
async function measured<T>(
  server: RunningServer & { worker: Worker },
  run: () => Promise<T>,
  liveAfterMs: number,
) {
  await new Promise((resolve) => setTimeout(resolve, 500));
  type Usage = { heapUsed: number; external: number };
  const live = async () => {
    const usage = await server.worker.call<Usage>('liveMemory');
    return (usage.heapUsed + usage.external) / MiB;
  };
  const liveBeforeMiB = await live();
  resetPeak(server.pid);
  const baselineMiB = memoryOf(server.pid).rss;
  const during = new Promise((resolve) => setTimeout(resolve, liveAfterMs)).then(live);
  const result = await run();
  const peakMiB = memoryOf(server.pid).peak;
  const liveHeldMiB = (await during) - liveBeforeMiB;
  return { baselineMiB, peakMiB, growthMiB: peakMiB - baselineMiB, liveHeldMiB, result };
}

async function slow() {
  const figures: Record<
    string,
    { baselineMiB: number; peakMiB: number; growthMiB: number; liveHeldMiB: number; outcomes: Outcomes }
  > = {};
  for (const peer of ['sink', 'listener'] as const) {
    const emulator = peer === 'listener' ? await startEmulatorProcess() : undefined;
    const server = await startServer(peer, emulator?.info, { limits: {} });
    try {
      log(`slow senders → ${peer}`);
      // Just before the senders end their messages, when the most is held.
      const { result, ...memory } = await measured(
        server,
        () => load.call<{ outcomes: Outcomes }>('slowSenders', { port: server.port, ...PLAN.slow }),
        PLAN.slow.durationMs - 2000,
      );
      figures[peer] = { ...memory, outcomes: result.outcomes };
    } finally {
      await server.stop();
      await emulator?.stop();
    }
  }
  return figures;
}

async function idle() {
  const emulator = await startEmulatorProcess();
  const server = await startServer('listener', emulator.info, { limits: { maxConnections: PLAN.idle } });
  try {
    log('ordinary sender, unloaded');
    const alone = await load.call<{ greeting: string; reply: string }>('legitimate', {
      port: server.port,
      localAddress: '127.200.0.1',
    });
    log(`${PLAN.idle} idle sessions, then the ordinary sender`);
    // 50 sessions per address over enough /24s that per-address limits alone do not stop them.
    const held = await load.call<{ greeted: number }>('holdIdle', {
      port: server.port,
      sessions: PLAN.idle,
      addresses: Math.ceil(PLAN.idle / 20),
      noopEveryMs: 20_000,
    });
    // One NOOP round later: the lockout the idle sessions cause is not a moment's congestion.
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    const beside = await load.call<{ greeting: string; reply: string }>('legitimate', {
      port: server.port,
      localAddress: '127.201.0.1',
    });
    const released = load.call<{ closedByServer: number }>('releaseIdle');
    return { idleGreeted: held.greeted, alone, beside, ...(await released) };
  } finally {
    await server.stop();
    await emulator.stop();
  }
}

type Sent = { greeting: string; reply: string; ms: number };

async function hang() {
  const emulator = await startEmulatorProcess();
  const proxy = await startFaultProxy(emulator.info.endpoint);
  const server = await startServer(
    'listener',
    { ...emulator.info, endpoint: proxy.endpoint },
    { limits: {} },
  );
  try {
    log('ordinary sender, S3 answering');
    const answering = await load.call<Sent>('legitimate', { port: server.port, localAddress: '127.202.0.1' });
    log(`ordinary sender, S3 holding PutObject for ${PLAN.hangMs / 1000} s`);
    proxy.add({ ops: ['S3.PutObject'], action: { kind: 'delay', ms: PLAN.hangMs } });
    const hung = await load.call<Sent>('legitimate', { port: server.port, localAddress: '127.202.0.2' });
    return { answering, hung, putObjectCalls: proxy.calls.get('S3.PutObject') ?? 0 };
  } finally {
    await server.stop();
    await proxy.close();
    await emulator.stop();
  }
}

const results: Record<string, unknown> = { date: new Date().toISOString(), quick, plan: PLAN };
try {
  if (runs('slow')) results.slow = await slow();
  if (runs('idle')) results.idle = await idle();
  if (runs('hang')) results.hang = await hang();
} finally {
  await load.stop();
}
console.log(report());

function report(): string {
  const lines = [`mailbridge abuse bench, ${results.date}${quick ? ' (--quick)' : ''}`];
  const slowFigures = results.slow as Awaited<ReturnType<typeof slow>> | undefined;
  if (slowFigures) {
    const { sessions, addresses, bytesPerSecond, chunkBytes, durationMs } = PLAN.slow;
    const { sink, listener } = slowFigures;
    lines.push(
      '',
      `### Slow senders: ${sessions} sessions from ${addresses} addresses, ${bytesPerSecond / 1024} KiB/s each in ${chunkBytes / 1024} KiB writes, for ${durationMs / 1000} s (MiB)`,
      '',
      '| peer | RSS before | RSS peak | RSS growth | growth vs sink | held after GC, 2 s before the end | replies |',
      '|---|---|---|---|---|---|---|',
      ...Object.entries(slowFigures).map(
        ([peer, f]) =>
          `| ${peer} | ${f.baselineMiB.toFixed(0)} | ${f.peakMiB.toFixed(0)} | ${f.growthMiB.toFixed(0)} | ${
            peer === 'sink' ? '1.00×' : `${(f.growthMiB / Math.max(1, sink!.growthMiB)).toFixed(2)}×`
          } | ${f.liveHeldMiB.toFixed(0)} | ${JSON.stringify(f.outcomes)} |`,
      ),
    );
    if (listener && sink) lines.push('', `spool memory budget: 16 MiB (default limits.spoolMemoryBytes)`);
  }
  const idleFigures = results.idle as Awaited<ReturnType<typeof idle>> | undefined;
  if (idleFigures) {
    lines.push(
      '',
      `### Idle sessions: ${PLAN.idle} slots, ${idleFigures.idleGreeted} idle sessions greeted, NOOP every 20 s`,
      '',
      '| ordinary sender | greeting | final reply |',
      '|---|---|---|',
      `| alone (reference) | ${idleFigures.alone.greeting} | ${idleFigures.alone.reply} |`,
      `| beside the idle sessions | ${idleFigures.beside.greeting} | ${idleFigures.beside.reply} |`,
      '',
      `idle sessions the listener had closed by the end: ${idleFigures.closedByServer}`,
    );
  }
  const hangFigures = results.hang as Awaited<ReturnType<typeof hang>> | undefined;
  if (hangFigures) {
    const { answering, hung } = hangFigures;
    lines.push(
      '',
      `### S3 hang: PutObject held ${PLAN.hangMs / 1000} s (${hangFigures.putObjectCalls} PutObject calls in all)`,
      '',
      '| ordinary sender | final reply | seconds to it | vs S3 answering |',
      '|---|---|---|---|',
      `| S3 answering (reference) | ${answering.reply} | ${(answering.ms / 1000).toFixed(1)} | 1.0× |`,
      `| S3 hanging | ${hung.reply} | ${(hung.ms / 1000).toFixed(1)} | ${(hung.ms / answering.ms).toFixed(0)}× |`,
    );
  }
  return lines.join('\n');
}
