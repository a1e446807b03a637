/**
 * The listener's CPU and memory at the target load, to size its Fargate task from (docs/cost.md):
 * the listener in a process of its own on the emulator, a steady stream of 10 KB messages at
 * {@link TASK_LOAD}'s rate over reused sessions, then a burst of 1 MB messages at once. CPU is the
 * process's user + system time over the run, as a share of one core; memory its peak RSS.
 */
import { readFileSync } from 'node:fs';
import type { Worker } from './ipc.ts';
import { memoryOf, resetPeak } from './ipc.ts';
import type { LoadResult } from './load-process.ts';
import { startEmulatorProcess, startServer } from './servers.ts';

/** The load a task is sized for: what one task takes at the scale-out threshold, with sessions open. */
export const TASK_LOAD = { rate: 25, seconds: 20, sessions: 10, size: 10 * 1024, burst: 100 } as const;

export interface TaskSizeMeasurement {
  readonly load: typeof TASK_LOAD;
  /** Messages accepted per second over the steady run, and those refused or failed. */
  readonly acceptedPerSecond: number;
  readonly errors: number;
  /** CPU of the listener process over the steady run, % of one core. */
  readonly cpuPercent: number;
  /** RSS after start-up, and peaks during the steady run and the burst, MiB. */
  readonly idleRssMiB: number;
  readonly steadyPeakMiB: number;
  readonly burstPeakMiB: number;
}

/** User + system CPU time of a process so far, ms (/proc/<pid>/stat, in clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export async function measureTaskSize(load: Worker): Promise<TaskSizeMeasurement> {
  const emulator = await startEmulatorProcess();
  try {
    const server = await startServer('listener', emulator.info);
    try {
      // Every path runs once before measuring.
      await load.call('burst', { port: server.port, sessions: 4, size: 1024 * 1024 });
      const idleRssMiB = memoryOf(server.pid).rss;
      resetPeak(server.pid);
      const cpuBefore = cpuMsOf(server.pid);
      const started = performance.now();
      const run = await load.call<{ sent: number; errors: number; sendSeconds: number }>('endToEnd', {
        port: server.port,
        sessions: TASK_LOAD.sessions,
        count: TASK_LOAD.rate * TASK_LOAD.seconds,
        rate: TASK_LOAD.rate,
        size: TASK_LOAD.size,
        failRate: 0,
        timeoutMs: 0,
      });
      const cpuPercent = ((cpuMsOf(server.pid) - cpuBefore) / (performance.now() - started)) * 100;
      const steadyPeakMiB = memoryOf(server.pid).peak;
      resetPeak(server.pid);
      const burst = await load.call<LoadResult>('burst', {
        port: server.port,
        sessions: TASK_LOAD.burst,
        size: 1024 * 1024,
      });
      return {
        load: TASK_LOAD,
        acceptedPerSecond: run.sent / run.sendSeconds,
        errors: run.errors + burst.errors,
        cpuPercent,
        idleRssMiB,
        steadyPeakMiB,
        burstPeakMiB: memoryOf(server.pid).peak,
      };
    } finally {
      await server.stop();
    }
  } finally {
    await emulator.stop();
  }
}
