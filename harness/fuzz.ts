import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startTestEmulator } from './emulator.ts';
import { type FuzzSession, type FuzzTarget, generateSession, runSession } from './smtp-fuzz.ts';

// SMTP fuzzing of the listener, run short by test/hostile/fuzz.test.ts and long by bench/fuzz.ts.
// The listener runs in a child process (fuzz-target.ts) against an emulator in this one; the
// sessions come from the grammar-aware generator in smtp-fuzz.ts. The seed is in the report so a
// failing run can be replayed.

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  readonly sessions: number;
  /** @default a random 32-bit seed (printed in the report) */
  readonly seed?: number;
  /** Sessions open at once. @default 24 */
  readonly concurrency?: number;
  /** Longest wait for one reply. @default 3000 */
  readonly replyTimeoutMs?: number;
  /** Progress lines (every 10 %). @default none */
  readonly log?: (line: string) => void;
}

export interface MemorySample {
  readonly rss: number;
  readonly heapUsed: number;
  /** Buffers and other memory outside the V8 heap. */
  readonly external: number;
}

/** What {@link runFuzz} observed; {@link fuzzFailures} says which properties it breaks. */
export interface FuzzReport {
  readonly seed: number;
  /** Sessions run (fewer than asked if the listener died). */
  readonly sessions: number;
  readonly durationMs: number;
  /** 1 if the listener process exited during the run, with how in `exit`. */
  readonly crashes: number;
  readonly exit?: string;
  /** Sessions still open on the listener once every client had closed. */
  readonly leakedSessions: number;
  /** Health probes during the run. */
  readonly probes: { readonly ok: number; readonly failed: number };
  readonly replies: number;
  /** Sessions that waited out a reply (the listener kept quiet, e.g. mid-DATA). */
  readonly quietSessions: number;
  /** A well-formed message sent after the run got `250 … queued`. */
  readonly servesAfter: boolean;
  /** The listener's memory after full GCs: after warm-up, and after the run. */
  readonly memory: { readonly before: MemorySample; readonly after: MemorySample };
}

/** Allowed growth of the listener's heap between warm-up and the end of the run. */
export const MAX_HEAP_GROWTH = 30 * 1024 * 1024;

const TARGET = fileURLToPath(new URL('./fuzz-target.ts', import.meta.url));

const LEGIT: FuzzSession = {
  index: -1,
  target: 'mx',
  steps: [
    'EHLO legit.test',
    'MAIL FROM:<legit@sender.test>',
    'RCPT TO:<someone@example.test>',
    'DATA',
    'Subject: after the fuzz\r\n\r\nstill serving\r\n.',
  ].map((text) => ({ send: Buffer.from(`${text}\r\n`), reply: true })),
};

interface Child {
  readonly process: ChildProcess;
  ask<T>(type: string): Promise<T>;
  exited: string | undefined;
}

async function startChild(env: Record<string, string>): Promise<{
  child: Child;
  ports: Record<FuzzTarget, number>;
  healthPort: number;
}> {
  const proc = spawn(process.execPath, ['--expose-gc', TARGET], {
    env: { ...process.env, ...env, POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  proc.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const child: Child = {
    process: proc,
    exited: undefined,
    async ask<T>(type: string) {
      const reply = new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the listener did not answer ${type}`)), 30_000);
        const onMessage = (message: { type: string }) => {
          if (message.type !== type) return;
          clearTimeout(timer);
          proc.off('message', onMessage);
          resolve(message as T);
        };
        proc.on('message', onMessage);
      });
      proc.send({ type });
      return reply;
    },
  };
  proc.once('exit', (code, signal) => {
    child.exited = `exit code ${code}, signal ${signal}; stderr: ${stderr.trim()}`;
  });
  const [ready] = (await Promise.race([
    once(proc, 'message'),
    once(proc, 'exit').then(() => {
      throw new Error(`the listener did not start: ${child.exited}`);
    }),
  ])) as [{ ports: Record<FuzzTarget, number>; healthPort: number }];
  return { child, ports: ready.ports, healthPort: ready.healthPort };
}

async function probe(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

/**
 * Runs `sessions` generated SMTP sessions (seeded: session i of seed s is always the same) against
 * a listener in a child process, probing its health endpoint throughout, then checks that no
 * session stayed open, that it still accepts a message, and how its heap compares to warm-up.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const concurrency = options.concurrency ?? 24;
  const replyTimeoutMs = options.replyTimeoutMs ?? 3000;
  const emulator = await startTestEmulator();
  const { child, ports, healthPort } = await startChild(emulator.env);
  try {
    const pool = async (count: number, sessionSeed: number, onDone: (done: number) => void) => {
      let next = 0;
      let done = 0;
      const totals = { replies: 0, quiet: 0 };
      const worker = async () => {
        while (next < count && !child.exited) {
          const result = await runSession(generateSession(sessionSeed, next++), ports, replyTimeoutMs);
          totals.replies += result.replies;
          if (result.timedOut) totals.quiet++;
          onDone(++done);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      return { ...totals, done };
    };

    // Warm-up first, so lazily built state (TLS contexts, SDK clients, JIT) is in the baseline.
    await pool(Math.min(500, Math.ceil(options.sessions / 10)), seed ^ 0x5eed, () => {});
    const before = await child.ask<MemorySample>('memory');

    const probes = { ok: 0, failed: 0 };
    const prober = setInterval(async () => {
      if (child.exited) return;
      if (await probe(healthPort)) probes.ok++;
      else probes.failed++;
    }, 500);
    const started = Date.now();
    const step = Math.max(1, Math.floor(options.sessions / 10));
    const run = await pool(options.sessions, seed, (done) => {
      if (done % step === 0) {
        options.log?.(`${done}/${options.sessions} sessions, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    });
    const durationMs = Date.now() - started;
    clearInterval(prober);
    if (await probe(healthPort)) probes.ok++;
    else if (!child.exited) probes.failed++;

    let leakedSessions = Number.NaN;
    let servesAfter = false;
    let after: MemorySample = { rss: Number.NaN, heapUsed: Number.NaN, external: Number.NaN };
    if (!child.exited) {
      // Server-side close events trail the clients' by a moment.
      const deadline = Date.now() + 15_000;
      for (;;) {
        leakedSessions = (await child.ask<{ sessions: number }>('sessions')).sessions;
        if (leakedSessions === 0 || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      servesAfter = /^250 2\.0\.0 queued as /m.test((await runSession(LEGIT, ports)).lastReply);
      after = await child.ask<MemorySample>('memory');
    }
    return {
      seed,
      sessions: run.done,
      durationMs,
      crashes: child.exited ? 1 : 0,
      ...(child.exited ? { exit: child.exited } : {}),
      leakedSessions,
      probes,
      replies: run.replies,
      quietSessions: run.quiet,
      servesAfter,
      memory: {
        before: { rss: before.rss, heapUsed: before.heapUsed, external: before.external },
        after: { rss: after.rss, heapUsed: after.heapUsed, external: after.external },
      },
    };
  } finally {
    if (!child.exited) {
      const exit = once(child.process, 'exit');
      child.process.send({ type: 'stop' });
      const timer = setTimeout(() => child.process.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    }
    await emulator.close();
  }
}

/** The properties a report breaks: crash, leaked sessions, failed probes, not serving, heap growth. */
export function fuzzFailures(report: FuzzReport): string[] {
  const failures: string[] = [];
  if (report.crashes > 0) failures.push(`the listener died: ${report.exit}`);
  if (report.leakedSessions !== 0)
    failures.push(`${report.leakedSessions} sessions still open after the run`);
  if (report.probes.failed > 0) failures.push(`${report.probes.failed} health probes failed`);
  if (!report.servesAfter) failures.push('a well-formed message was not accepted after the run');
  const growth = report.memory.after.heapUsed - report.memory.before.heapUsed;
  if (!(growth < MAX_HEAP_GROWTH)) failures.push(`heap grew by ${mb(growth)} (limit ${mb(MAX_HEAP_GROWTH)})`);
  return failures;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** One line per figure, for the console. */
export function describeFuzzReport(report: FuzzReport): string {
  const { before, after } = report.memory;
  return [
    `seed ${report.seed}: ${report.sessions} sessions in ${(report.durationMs / 1000).toFixed(1)} s`,
    `crashes ${report.crashes}${report.exit ? ` (${report.exit})` : ''}, leaked sessions ${report.leakedSessions}`,
    `health probes ok ${report.probes.ok}, failed ${report.probes.failed}; replies ${report.replies}; quiet sessions ${report.quietSessions}`,
    `serves after the run: ${report.servesAfter}`,
    `listener memory after GC: heapUsed ${mb(before.heapUsed)} -> ${mb(after.heapUsed)}, external ${mb(before.external)} -> ${mb(after.external)}, rss ${mb(before.rss)} -> ${mb(after.rss)}`,
  ].join('\n');
}
