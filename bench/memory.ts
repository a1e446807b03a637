import { memoryOf, resetPeak, type Worker } from './ipc.ts';
import type { LoadResult } from './load-process.ts';
import { type EmulatorInfo, startEmulatorProcess, startServer } from './servers.ts';

export type Peer = 'sink' | 'listener' | 'naive';

/** Peak RSS (MiB) of each peer in one scenario; `growth` is the peak minus the RSS just before. */
export interface MemoryFigure {
  readonly peakMiB: number;
  readonly baselineMiB: number;
  readonly growthMiB: number;
  readonly errors: number;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

/** A fresh server (and emulator) per scenario: what one scenario leaves in the heap never weighs on the next. */
async function scenario(
  peer: Peer,
  run: (port: number) => Promise<LoadResult | undefined>,
  warm: (port: number) => Promise<unknown>,
): Promise<MemoryFigure> {
  const emulator = peer === 'sink' ? undefined : await startEmulatorProcess();
  try {
    const server = await startServer(peer, emulator?.info as EmulatorInfo | undefined);
    try {
      await warm(server.port);
      await settle();
      resetPeak(server.pid);
      const baseline = memoryOf(server.pid).rss;
      const result = await run(server.port);
      await settle();
      const { peak } = memoryOf(server.pid);
      return {
        peakMiB: peak,
        baselineMiB: baseline,
        growthMiB: peak - baseline,
        errors: result?.errors ?? 0,
      };
    } finally {
      await server.stop();
    }
  } finally {
    await emulator?.stop();
  }
}

/** Section 3: idle sessions, one large message, a burst of 1 MB messages; each peer in the same run. */
export async function memory(
  load: Worker,
  plan: { idle: number; largeBytes: number; burst: number; peers: readonly Peer[] },
) {
  // Every path (TLS-less SMTP, SDK clients, the S3 and SQS calls) is exercised once before measuring.
  const warm = (port: number) => load.call('burst', { port, sessions: 4, size: 1024 * 1024 });
  const results: Record<string, Partial<Record<Peer, MemoryFigure>>> = { idle: {}, large: {}, burst: {} };
  for (const peer of plan.peers) {
    results.idle![peer] = await scenario(
      peer,
      async (port) => {
        await load.call('openIdle', { port, sessions: plan.idle });
        await settle();
        await load.call('closeIdle');
        return undefined;
      },
      warm,
    );
    results.large![peer] = await scenario(
      peer,
      (port) => load.call<LoadResult>('burst', { port, sessions: 1, size: plan.largeBytes }),
      warm,
    );
    results.burst![peer] = await scenario(
      peer,
      (port) => load.call<LoadResult>('burst', { port, sessions: plan.burst, size: 1024 * 1024 }),
      warm,
    );
  }
  return results;
}
