import type { Worker } from './ipc.ts';
import type { LoadResult, SmtpLoad } from './load-process.ts';
import {
  type EmulatorInfo,
  postfixSinkBinary,
  type RunningServer,
  startEmulatorProcess,
  startPostfixSink,
  startServer,
} from './servers.ts';
import { median, spread } from './stats.ts';

/** The peers of the intake table: (a) to (f) of issue 5. */
export type Peer = 'sink' | 'listener' | 'naive' | 'floor' | 'postfix';

/** Median and spread of one peer in one cell. */
export interface Figure {
  readonly msgsPerSecond: number;
  readonly mbPerSecond: number;
  /** ± half-range over the repeats, as a share of the median. */
  readonly spread: number;
  readonly runs: number[];
  readonly errors: number;
  readonly firstError?: string;
}

export interface IntakeCell {
  readonly size: number;
  readonly sessions: number;
  readonly reuse: boolean;
  readonly peers: Partial<Record<Peer, Figure>>;
}

export interface IntakePlan {
  readonly sizes: number[];
  readonly sessions: number[];
  readonly modes: boolean[];
  readonly repeats: number;
  readonly durationMs: number;
}

function figure(results: LoadResult[]): Figure {
  const rates = results.map((result) => result.messages / result.seconds);
  const mb = results.map((result) => result.bytes / 1e6 / result.seconds);
  const firstError = results.find((result) => result.firstError)?.firstError;
  return {
    msgsPerSecond: median(rates),
    mbPerSecond: median(mb),
    spread: spread(rates),
    runs: rates,
    errors: results.reduce((sum, result) => sum + result.errors, 0),
    ...(firstError ? { firstError } : {}),
  };
}

async function repeat(times: number, run: () => Promise<LoadResult>): Promise<LoadResult[]> {
  const results: LoadResult[] = [];
  for (let i = 0; i < times; i++) results.push(await run());
  return results;
}

/** A fresh emulator (durable peers) and server per cell, so stored objects never pile up between cells. */
async function withServer<T>(
  peer: Exclude<Peer, 'floor'>,
  use: (server: RunningServer, emulator?: EmulatorInfo) => Promise<T>,
): Promise<T> {
  if (peer === 'postfix') {
    const server = await startPostfixSink(postfixSinkBinary()!);
    try {
      return await use(server);
    } finally {
      await server.stop();
    }
  }
  const emulator = peer === 'sink' ? undefined : await startEmulatorProcess();
  try {
    const server = await startServer(peer, emulator?.info);
    try {
      return await use(server, emulator?.info);
    } finally {
      await server.stop();
    }
  } finally {
    await emulator?.stop();
  }
}

/** Section 1: every cell of the plan for every peer present, repeats back to back. */
export async function intake(
  load: Worker,
  plan: IntakePlan,
  log: (line: string) => void,
): Promise<IntakeCell[]> {
  const peers: Exclude<Peer, 'floor'>[] = ['sink', 'listener', 'naive'];
  if (postfixSinkBinary()) peers.push('postfix');
  const cells: IntakeCell[] = [];
  for (const size of plan.sizes) {
    for (const sessions of plan.sessions) {
      for (const reuse of plan.modes) {
        const figures: Partial<Record<Peer, Figure>> = {};
        const base = { size, sessions, reuse, durationMs: plan.durationMs };
        for (const peer of peers) {
          figures[peer] = figure(
            await withServer(peer, (server) =>
              repeat(plan.repeats, () =>
                load.call<LoadResult>('smtp', { ...base, port: server.port } satisfies SmtpLoad),
              ),
            ),
          );
        }
        // The floor has no connections: it belongs with the reused-connection rows.
        if (reuse) {
          const emulator = await startEmulatorProcess();
          try {
            figures.floor = figure(
              await repeat(plan.repeats, () =>
                load.call<LoadResult>('floor', {
                  endpoint: emulator.info.endpoint,
                  bucket: emulator.info.bucket,
                  queueUrl: emulator.info.inboundQueueUrl,
                  size,
                  concurrency: sessions,
                  durationMs: plan.durationMs,
                }),
              ),
            );
          } finally {
            await emulator.stop();
          }
        }
        cells.push({ size, sessions, reuse, peers: figures });
        log(
          `  ${label(size)} × ${sessions} ${reuse ? 'reused' : 'per-message'}: ` +
            Object.entries(figures)
              .map(
                ([peer, f]) =>
                  `${peer} ${f.msgsPerSecond.toFixed(0)}/s${f.errors ? ` (${f.errors} errors)` : ''}`,
              )
              .join(', '),
        );
      }
    }
  }
  return cells;
}

/** Section 7: STARTTLS on reused connections against plain, for the sink and the listener. */
export async function starttls(load: Worker, plan: IntakePlan) {
  const result: Record<string, { plain: Figure; starttls: Figure; costRatio: number }> = {};
  for (const peer of ['sink', 'listener'] as const) {
    const [plain, secure] = await withServer(peer, async (server) => {
      const run = (tls: boolean) =>
        load.call<LoadResult>('smtp', {
          port: server.port,
          size: 2048,
          sessions: 10,
          reuse: true,
          starttls: tls,
          durationMs: plan.durationMs,
        } satisfies SmtpLoad);
      const plainRuns: LoadResult[] = [];
      const tlsRuns: LoadResult[] = [];
      // Alternated so that noise from other work on the machine hits both alike.
      for (let i = 0; i < plan.repeats; i++) {
        plainRuns.push(await run(false));
        tlsRuns.push(await run(true));
      }
      return [figure(plainRuns), figure(tlsRuns)];
    });
    result[peer] = { plain, starttls: secure, costRatio: plain.msgsPerSecond / secure.msgsPerSecond };
  }
  return result;
}

/** Section 6: what the emulator alone sustains from one process at concurrency 16. */
export async function emulatorFloor(load: Worker, durationMs: number) {
  const emulator = await startEmulatorProcess();
  try {
    const { putObject, sendMessage } = await load.call<{ putObject: LoadResult; sendMessage: LoadResult }>(
      'emulatorFloor',
      {
        endpoint: emulator.info.endpoint,
        bucket: emulator.info.bucket,
        queueUrl: emulator.info.inboundQueueUrl,
        concurrency: 16,
        durationMs,
      },
    );
    return {
      putObjectPerSecond: putObject.messages / putObject.seconds,
      sendMessagePerSecond: sendMessage.messages / sendMessage.seconds,
    };
  } finally {
    await emulator.stop();
  }
}

/** 2048 → "2 KB", 5242880 → "5 MB". */
export function label(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round(bytes / 1024 / 1024)} MB` : `${Math.round(bytes / 1024)} KB`;
}
