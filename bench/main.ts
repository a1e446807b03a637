/**
 * `npm run bench` (`-- --quick` for the reduced matrix; `-- --only cost,parse` for some sections):
 * intake throughput, end-to-end latency, memory, parsing, the functions' weight, the emulator's
 * floor and STARTTLS, each figure next to a reference measured in the same run. Prints one table
 * and writes the same as JSON to bench/results/<timestamp>.json. Asserts nothing.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { FUNCTION_V8_FLAGS } from '../infra/index.ts';
import { type BundleResult, measureBundles } from './bundles.ts';
import type { CostMeasurement } from './cost.ts';
import { fixedMonthly, functionSizes, perMillion, total } from './cost-model.ts';
import { emulatorFloor, type IntakeCell, type IntakePlan, intake, label, starttls } from './intake.ts';
import { Worker } from './ipc.ts';
import { E2E_RETRY_SCHEDULE, latency } from './latency.ts';
import { memory } from './memory.ts';
import { PARSE_CASES, type ParseCase, type Parser } from './parse.ts';
import { rcptBench } from './rcpt.ts';
import { scanBench } from './scan.ts';
import { harakaBinary, postfixSinkBinary } from './servers.ts';
import { measureTaskSize } from './task-size.ts';

const quick = process.argv.includes('--quick');
const SECTIONS = [
  'intake',
  'starttls',
  'floor',
  'latency',
  'memory',
  'tasksize',
  'cost',
  'parse',
  'bundles',
  'rcpt',
  'scan',
] as const;
type Section = (typeof SECTIONS)[number];
const only = onlySections(process.argv);

/** The sections `--only a,b` names (all without it); an unknown name stops the run before it starts. */
function onlySections(argv: readonly string[]): ReadonlySet<Section> {
  const index = argv.indexOf('--only');
  if (index < 0) return new Set(SECTIONS);
  const names = (argv[index + 1] ?? '').split(',').filter(Boolean);
  const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0) {
    throw new Error(
      `--only takes a comma-separated list of ${SECTIONS.join(', ')}; got "${argv[index + 1] ?? ''}"`,
    );
  }
  return new Set(names as Section[]);
}
const PLAN = quick
  ? {
      intake: { sizes: [2048, 102_400], sessions: [10], modes: [true], repeats: 2, durationMs: 1000 },
      e2eMessages: 100,
      e2eRate: 25,
      memory: { idle: 1000, largeBytes: 50e6, burst: 200, peers: ['sink', 'listener'] as const },
      parseBudget: { small: 1e6, large: 10e6 },
      coldImports: 3,
      floorMs: 1000,
    }
  : {
      intake: {
        sizes: [2048, 102_400, 5e6],
        sessions: [1, 10, 100],
        modes: [true, false],
        repeats: 3,
        durationMs: 2000,
      },
      e2eMessages: 1000,
      e2eRate: 25,
      memory: { idle: 1000, largeBytes: 50e6, burst: 200, peers: ['sink', 'listener', 'naive'] as const },
      parseBudget: { small: 4e6, large: 40e6 },
      coldImports: 10,
      floorMs: 3000,
    };

const started = Date.now();
const log = (line: string) =>
  console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

async function parsing() {
  const results: Record<
    string,
    Record<Parser, { mbPerSecond: number; growthMiB: number; bytes: number }>
  > = {};
  for (const name of Object.keys(PARSE_CASES) as ParseCase[]) {
    const row = {} as Record<Parser, { mbPerSecond: number; growthMiB: number; bytes: number }>;
    for (const parser of ['streaming', 'simpleParser'] as const) {
      // Both parsers run with the V8 flags the parse function is deployed with.
      const worker = new Worker('./parse.ts', [], ['--expose-gc', ...FUNCTION_V8_FLAGS]);
      try {
        await worker.ready;
        const budget = name.startsWith('10 MB') ? PLAN.parseBudget.large : PLAN.parseBudget.small;
        row[parser] = await worker.call('run', { parser, case: name, budget });
      } finally {
        await worker.stop();
      }
    }
    results[name] = row;
  }
  return results;
}

/** The measured inputs of the cost model (bench/cost.ts), with the functions' V8 flags. */
async function costInputs(): Promise<CostMeasurement> {
  const worker = new Worker('./cost.ts', [], [...FUNCTION_V8_FLAGS]);
  try {
    await worker.ready;
    return await worker.call<CostMeasurement>('measure');
  } finally {
    await worker.stop();
  }
}

const load = new Worker('./load-process.ts');
await load.ready;
const postfix = postfixSinkBinary();
const json: Record<string, unknown> = {
  date: new Date().toISOString(),
  quick,
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
  },
  peers: {
    postfix: postfix ? `smtp-sink at ${postfix}` : 'skipped (not installed)',
    haraka: harakaBinary() ? 'skipped (installed, no bench config for it)' : 'skipped (not installed)',
  },
  plan: PLAN,
};
try {
  if (only.has('intake')) {
    log('intake throughput');
    json.intake = await intake(load, PLAN.intake as IntakePlan, log);
  }
  if (only.has('starttls')) {
    log('STARTTLS');
    json.starttls = await starttls(load, PLAN.intake as IntakePlan);
  }
  if (only.has('floor')) {
    log('emulator floor');
    json.emulatorFloor = await emulatorFloor(load, PLAN.floorMs);
  }
  if (only.has('latency')) {
    log('end-to-end latency');
    json.latency = await latency(load, PLAN.e2eMessages, PLAN.e2eRate, [0, 0.3]);
    json.retrySchedule = E2E_RETRY_SCHEDULE;
  }
  if (only.has('memory')) {
    log('memory');
    json.memory = await memory(load, PLAN.memory);
  }
  if (only.has('tasksize')) {
    log('listener task size');
    json.taskSize = await measureTaskSize(load);
  }
  if (only.has('cost')) {
    log('cost inputs');
    json.cost = await costInputs();
  }
  if (only.has('parse')) {
    log('parsing');
    json.parse = await parsing();
  }
  if (only.has('bundles')) {
    log('bundles');
    json.bundles = await measureBundles(PLAN.coldImports);
  }
  if (only.has('rcpt')) json.rcpt = await rcptBench(log);
  if (only.has('scan')) json.scan = await scanBench(quick, log);
} finally {
  await load.stop();
}
json.seconds = (Date.now() - started) / 1000;

const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
console.log(report(json));
console.log(`\nJSON: ${file}`);

function sumSqs(requests: Record<string, number>): number {
  return Object.entries(requests)
    .filter(([kind]) => kind.startsWith('SQS'))
    .reduce((sum, [, count]) => sum + count, 0);
}

/** The one table of the run, as Markdown (docs/performance.md embeds it as printed). */
function report(results: typeof json): string {
  const lines: string[] = [];
  const n = (value: number | undefined, digits = 0) =>
    value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);
  const pct = (value: number) => `±${(value * 100).toFixed(0)}%`;
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}×` : '–');
  lines.push(
    `mailbridge bench, ${results.date}${quick ? ' (--quick)' : ''}: ${cpus().length} cores, Node ${process.version}; ` +
      'medians of repeats, ± is half the range; ratios against references measured in the same run.',
  );
  if (results.intake) intakeTable(results, lines, n, pct, ratio);
  if (results.starttls && results.emulatorFloor) floorTable(results, lines, n);
  if (results.latency) latencyTable(results, lines, n);
  if (results.memory) memoryTable(results, lines, n, ratio);
  if (results.parse) parseTable(results, lines, n, ratio);
  if (results.cost) costTable(results, lines, n);
  if (results.bundles) bundlesTable(results, lines, n, ratio);
  lines.push('', `Run took ${n(results.seconds as number)} s.`);
  return lines.join('\n');
}

type Num = (value: number | undefined, digits?: number) => string;
type Ratio = (a: number | undefined, b: number | undefined) => string;

function intakeTable(
  results: typeof json,
  lines: string[],
  n: Num,
  pct: (value: number) => string,
  ratio: Ratio,
) {
  lines.push(
    '',
    '### 1. Intake (msg/s; (a) bare smtp-server sink = 1.0)',
    '',
    '| size | sessions | connections | (a) sink | (b) listener | (c) naive durable | (d) storage floor | (e) Postfix smtp-sink | b/a | b/c | b/d | b MB/s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const cell of (results.intake as IntakeCell[]) ?? []) {
    const { sink, listener, naive, floor, postfix: pf } = cell.peers;
    const f = (figure: typeof sink, reference = sink) =>
      figure
        ? `${n(figure.msgsPerSecond)} ${pct(figure.spread)}${figure !== reference && reference ? ` (${ratio(figure.msgsPerSecond, reference.msgsPerSecond)})` : ''}${figure.errors ? ` ⚠${figure.errors} err` : ''}`
        : '–';
    lines.push(
      `| ${label(cell.size)} | ${cell.sessions} | ${cell.reuse ? 'reused' : 'one per message'} | ${f(sink)} | ${f(listener)} | ${f(naive)} | ${f(floor)} | ${pf ? f(pf) : 'skipped'} | ${ratio(listener?.msgsPerSecond, sink?.msgsPerSecond)} | ${ratio(listener?.msgsPerSecond, naive?.msgsPerSecond)} | ${ratio(listener?.msgsPerSecond, floor?.msgsPerSecond)} | ${n(listener?.mbPerSecond, 1)} |`,
    );
  }
  const peers = results.peers as Record<string, string>;
  lines.push(
    '',
    `(e) Postfix: ${peers.postfix}. (f) Haraka: ${peers.haraka}. One connection per message is bounded near 10 msg/s per session by smtp-server's fixed 100 ms greeting delay (early-talker check), for (a), (b) and (c) alike.`,
  );
}

function floorTable(results: typeof json, lines: string[], n: Num) {
  const tls = results.starttls as Record<
    string,
    { plain: { msgsPerSecond: number }; starttls: { msgsPerSecond: number }; costRatio: number }
  >;
  const floor = results.emulatorFloor as { putObjectPerSecond: number; sendMessagePerSecond: number };
  lines.push(
    '',
    '### 6–7. Emulator floor and STARTTLS',
    '',
    `| figure | value |`,
    '|---|---|',
    `| emulator PutObject/s (2 KB, concurrency 16, one process) | ${n(floor.putObjectPerSecond)} |`,
    `| emulator SendMessage/s (concurrency 16, one process) | ${n(floor.sendMessagePerSecond)} |`,
    ...Object.entries(tls).map(
      ([peer, t]) =>
        `| ${peer}: 2 KB × 10 reused, plain ${n(t.plain.msgsPerSecond)} msg/s, STARTTLS ${n(t.starttls.msgsPerSecond)} msg/s | cost ${t.costRatio.toFixed(2)}× (target ≤ 1.15×) |`,
    ),
  );
}

function latencyTable(results: typeof json, lines: string[], n: Num) {
  const lat = results.latency as Record<
    string,
    { messages: number; delivered: number; tries: number; p50: number; p90: number; p99: number; max: number }
  >;
  lines.push(
    '',
    `### 2. End to end (ms, last byte of DATA → webhook received; 2 KB over 10 sessions at ${PLAN.e2eRate} msg/s; retry schedule ${E2E_RETRY_SCHEDULE[0]} s × ${E2E_RETRY_SCHEDULE.length})`,
    '',
    '| endpoint | messages | delivered | tries | p50 | p90 | p99 | max |',
    '|---|---|---|---|---|---|---|---|',
    ...Object.entries(lat).map(
      ([name, l]) =>
        `| ${name === 'fail0' ? 'always 2xx' : 'fails 30% of tries (time to first success)'} | ${l.messages} | ${l.delivered} | ${l.tries} | ${n(l.p50)} | ${n(l.p90)} | ${n(l.p99)} | ${n(l.max)} |`,
    ),
  );
}

function memoryTable(results: typeof json, lines: string[], n: Num, ratio: Ratio) {
  const mem = results.memory as Record<
    string,
    Record<string, { peakMiB: number; baselineMiB: number; growthMiB: number; errors: number }>
  >;
  const m = (scenario: string, peer: string) => mem[scenario]?.[peer];
  const memRow = (name: string, scenario: string, pick: 'peakMiB' | 'growthMiB') => {
    const sink = m(scenario, 'sink');
    const cells = ['sink', 'listener', 'naive'].map((peer) => {
      const figure = m(scenario, peer);
      if (!figure) return '–';
      const value = figure[pick];
      return `${n(value)}${peer !== 'sink' && sink ? ` (${ratio(value, sink[pick])})` : ''}${figure.errors ? ` ⚠${figure.errors} err` : ''}`;
    });
    return `| ${name} | ${cells.join(' | ')} |`;
  };
  lines.push(
    '',
    '### 3. Memory (MiB of RSS of the server process)',
    '',
    '| scenario | (a) sink | (b) listener | (c) naive durable |',
    '|---|---|---|---|',
    memRow(`peak, ${PLAN.memory.idle} idle sessions after EHLO (target b ≤ 1.3× a)`, 'idle', 'peakMiB'),
    memRow(
      `growth while one ${PLAN.memory.largeBytes / 1e6} MB message streams through (target b < 40)`,
      'large',
      'growthMiB',
    ),
    memRow(`peak, one ${PLAN.memory.largeBytes / 1e6} MB message`, 'large', 'peakMiB'),
    memRow(`peak, ${PLAN.memory.burst} sessions × 1 MB at once (target b ≤ 1.3× a)`, 'burst', 'peakMiB'),
  );
}

function parseTable(results: typeof json, lines: string[], n: Num, ratio: Ratio) {
  const parse = results.parse as Record<
    string,
    Record<string, { mbPerSecond: number; growthMiB: number; bytes: number }>
  >;
  lines.push(
    '',
    '### 4. Parsing (functions/parse streaming parser vs mailparser simpleParser)',
    '',
    '| message | streaming MB/s | simpleParser MB/s | speed ratio | streaming RSS growth MiB | simpleParser RSS growth MiB | memory ratio |',
    '|---|---|---|---|---|---|---|',
    ...Object.entries(parse).map(
      ([name, row]) =>
        `| ${name} | ${n(row.streaming?.mbPerSecond, 1)} | ${n(row.simpleParser?.mbPerSecond, 1)} | ${ratio(row.streaming?.mbPerSecond, row.simpleParser?.mbPerSecond)} | ${n(row.streaming?.growthMiB, 1)} | ${n(row.simpleParser?.growthMiB, 1)} | ${ratio(row.streaming?.growthMiB, row.simpleParser?.growthMiB)} |`,
    ),
  );
}

function costTable(results: typeof json, lines: string[], n: Num) {
  const cost = results.cost as CostMeasurement;
  const sizes = functionSizes(cost);
  lines.push(
    '',
    "### 8. Cost from this run's figures (bench/cost-model.ts list prices; docs/cost.md has every line)",
    '',
    '| figure | low volume (batches of 1) | high volume (burst) |',
    '|---|---|---|',
    `| cost per million ${cost.messageBytes / 1024} KB messages, one endpoint (target ≤ $15) | $${total(perMillion(cost, cost.low)).toFixed(2)} | $${total(perMillion(cost, cost.high)).toFixed(2)} |`,
    `| S3 PUTs per message | ${n(cost.low.requestsPerMessage['S3 PutObject'], 2)} | ${n(cost.high.requestsPerMessage['S3 PutObject'], 2)} |`,
    `| SQS requests per message | ${n(sumSqs(cost.low.requestsPerMessage), 2)} | ${n(sumSqs(cost.high.requestsPerMessage), 2)} |`,
    `| log bytes per message | ${n(cost.low.logBytesPerMessage)} | ${n(cost.high.logBytesPerMessage)} |`,
    `| parse / deliver ms per message (DNS ${cost.dnsDelayMs} ms a lookup) | ${n(cost.low.durationMs.parse)} / ${n(cost.low.durationMs.deliver)} | ${n(cost.high.durationMs.parse)} / ${n(cost.high.durationMs.deliver)} |`,
    `| memory chosen, parse / deliver | ${sizes.parse.memoryMb} / ${sizes.deliver.memoryMb} MB | |`,
    `| fixed per month, default deployment (target ≤ $50) | $${total(fixedMonthly()).toFixed(2)} | |`,
  );
}

function bundlesTable(results: typeof json, lines: string[], n: Num, ratio: Ratio) {
  const bundles = results.bundles as BundleResult[];
  lines.push(
    '',
    '### 5. Functions (bundled as infra/functions.ts bundles them; targets < 1 MB, cold import < 150 ms)',
    '',
    '| function | read at cold start | zip contents | cold import (median of runs) | vs reference | first error stack | heaviest inputs |',
    '|---|---|---|---|---|---|---|',
    ...bundles.map(
      (b) =>
        `| ${b.name} | ${(b.bytes / 1e6).toFixed(2)} MB | ${(b.assetBytes / 1e6).toFixed(2)} MB | ${n(b.coldImportMs)} ms (${b.coldImportsMs.length} runs) | ${b === bundles[0] ? '1.0' : `${ratio(b.bytes, bundles[0]?.bytes)} size, ${ratio(b.coldImportMs, bundles[0]?.coldImportMs)} time`} | ${n(b.firstStackMs, 1)} ms | ${b.heaviest.map((h) => `${h.path} ${(h.bytes / 1e3).toFixed(0)} KB`).join(', ')} |`,
    ),
  );
}
