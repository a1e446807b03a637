/**
 * The content-scanning tee (listener/filtering) against the real rspamd and clamd, each figure next
 * to the same pipeline with scanning off, in the same run: time per message from its first byte to
 * its verdicts, and the RSS of this process while 200 messages of 1 MB stream through at once.
 * `node bench/scan.ts` alone, or part of `npm run bench`. Asserts nothing.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { ScannersConfigSchema } from '../core/filtering/index.ts';
import { largeMessage } from '../harness/filtering-messages.ts';
import { skipUnless, startClamd, startRspamd } from '../harness/scanners.ts';
import { ContentScanners } from '../listener/filtering/index.ts';
import { percentile } from './stats.ts';

const ENVELOPE = {
  mailFrom: 'alice@sender.test',
  rcptTo: ['support@example.test'],
  remoteAddress: '192.0.2.10',
  helo: 'mail.sender.test',
  hostname: 'mail.sender.test',
};

const discard = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

// Verdicts that were not given, by scanner and reason (busy, timeout, …): part of each figure.
let unavailable: Record<string, number> = {};

async function one(scanners: ContentScanners, bytes: number): Promise<number> {
  const started = performance.now();
  const scan = scanners.start(ENVELOPE);
  await pipeline(largeMessage(bytes), scan.tee, discard());
  const verdicts = await scan.verdicts();
  for (const [name, verdict] of Object.entries(verdicts)) {
    if (verdict.status === 'unavailable' && verdict.reason !== 'disabled') {
      const key = `${name} ${verdict.reason}`;
      unavailable[key] = (unavailable[key] ?? 0) + 1;
    }
  }
  return performance.now() - started;
}

function unavailableSoFar() {
  const counted = unavailable;
  unavailable = {};
  return counted;
}

async function run(scanners: ContentScanners, bytes: number, messages: number, concurrency: number) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < messages) {
        next += 1;
        latencies.push(await one(scanners, bytes));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    msgsPerSecond: messages / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    unavailable: unavailableSoFar(),
  };
}

async function peakRss(scanners: ContentScanners, sessions: number, bytes: number) {
  globalThis.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  await Promise.all(Array.from({ length: sessions }, () => one(scanners, bytes)));
  clearInterval(sampler);
  return {
    baselineMiB: baseline / 2 ** 20,
    peakMiB: peak / 2 ** 20,
    growthMiB: (peak - baseline) / 2 ** 20,
    unavailable: unavailableSoFar(),
  };
}

/** Runs the comparison; `undefined` when the scanners are not installed. */
export async function scanBench(quick: boolean, log: (line: string) => void = console.error) {
  const missing = skipUnless('rspamd') || skipUnless('clamd');
  if (missing) {
    log(`scan: skipped, ${missing}`);
    return undefined;
  }
  const [rspamd, clamd] = await Promise.all([startRspamd({ workers: 2 }), startClamd()]);
  const off = new ContentScanners(ScannersConfigSchema.parse({}));
  // The defaults, as the listener will run them, on the scanners' free ports.
  const on = new ContentScanners(
    ScannersConfigSchema.parse({
      rspamd: { url: `http://127.0.0.1:${rspamd.port}` },
      clamd: { port: clamd.port },
    }),
  );
  try {
    const startup = { rspamdMs: rspamd.startupMs, clamdMs: clamd.startupMs };
    const messages = quick ? 100 : 400;
    const throughput: Record<string, unknown> = {};
    for (const bytes of [10_240, 102_400]) {
      // Warm up both paths (JIT, the scanners' caches) before measuring either.
      await run(off, bytes, 20, 10);
      await run(on, bytes, 20, 10);
      unavailableSoFar();
      const reference = await run(off, bytes, messages, 10);
      const scanning = await run(on, bytes, messages, 10);
      throughput[`${bytes / 1024} KB`] = {
        off: reference,
        on: scanning,
        costPerMessage: reference.msgsPerSecond / scanning.msgsPerSecond,
        addedP50Ms: scanning.p50 - reference.p50,
      };
      log(`scan: ${bytes / 1024} KB, cost ${(reference.msgsPerSecond / scanning.msgsPerSecond).toFixed(1)}x`);
    }
    // The daemons themselves, on a steady stream of 10 KB messages: what their sidecars are sized from.
    const daemons = await daemonUsage(
      { rspamd: rspamd.processGroup, clamd: clamd.processGroup },
      messages,
      () => run(on, 10_240, messages, 10),
    );
    // Each in a fresh process, so the heap the throughput runs left behind weighs on none of them.
    // With the default cap most of the 200 are `busy`; uncapped, all 200 stream to both scanners.
    const memory = {
      off: await inChild({}),
      on: await inChild({ rspamd: { url: `http://127.0.0.1:${rspamd.port}` }, clamd: { port: clamd.port } }),
      onUncapped: await inChild({
        rspamd: { url: `http://127.0.0.1:${rspamd.port}`, maxConcurrent: 200 },
        clamd: { port: clamd.port, maxConcurrent: 200 },
        budget: 30,
      }),
    };
    const results = { startup, throughput, memory, daemons };
    console.log(JSON.stringify(results, null, 2));
    return results;
  } finally {
    await Promise.all([rspamd.stop(), clamd.stop()]);
  }
}

/** CPU time (ms) and RSS (MiB) of every process in a process group, from /proc (Linux). */
function groupUsage(group: number): { cpuMs: number; rssMiB: number } {
  let cpuMs = 0;
  let rssMiB = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command: state, ppid, pgrp, …; utime and stime are the 12th and 13th, in 10 ms ticks.
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(fields[2]) !== group) continue;
      cpuMs += (Number(fields[11]) + Number(fields[12])) * 10;
      rssMiB += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    } catch {
      // The process ended while being read.
    }
  }
  return { cpuMs, rssMiB };
}

/** What each scanner daemon used while `work` scanned `messages`: CPU per message and peak RSS. */
async function daemonUsage(
  groups: Record<string, number>,
  messages: number,
  work: () => Promise<unknown>,
): Promise<Record<string, { cpuMsPerMessage: number; peakRssMiB: number }>> {
  const before = Object.fromEntries(Object.entries(groups).map(([name, group]) => [name, groupUsage(group)]));
  const peak = Object.fromEntries(Object.keys(groups).map((name) => [name, 0]));
  const sampler = setInterval(() => {
    for (const [name, group] of Object.entries(groups))
      peak[name] = Math.max(peak[name]!, groupUsage(group).rssMiB);
  }, 50);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  return Object.fromEntries(
    Object.entries(groups).map(([name, group]) => [
      name,
      {
        cpuMsPerMessage: (groupUsage(group).cpuMs - before[name]!.cpuMs) / messages,
        peakRssMiB: Math.max(peak[name]!, groupUsage(group).rssMiB),
      },
    ]),
  );
}

const MEMORY_FLAG = '--memory-config=';

/** {@link peakRss} of 200 concurrent 1 MB messages in a child process with `config` (`scanners:`). */
async function inChild(
  config: object,
): Promise<ReturnType<typeof peakRss> extends Promise<infer T> ? T : never> {
  const { stdout } = await promisify(execFile)(process.execPath, [
    '--expose-gc',
    import.meta.filename,
    `${MEMORY_FLAG}${JSON.stringify(config)}`,
  ]);
  return JSON.parse(stdout);
}

if (import.meta.main) {
  const child = process.argv.find((arg) => arg.startsWith(MEMORY_FLAG));
  if (child) {
    const scanners = new ContentScanners(
      ScannersConfigSchema.parse(JSON.parse(child.slice(MEMORY_FLAG.length))),
    );
    await one(scanners, 64 * 1024); // load every module the run uses before the baseline
    unavailableSoFar();
    console.log(JSON.stringify(await peakRss(scanners, 200, 1024 * 1024)));
  } else {
    await scanBench(process.argv.includes('--quick'));
  }
}
