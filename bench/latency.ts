import type { Worker } from './ipc.ts';
import { startEmulatorProcess, startServer } from './servers.ts';
import { percentile } from './stats.ts';

/** Waits between tries of the end-to-end failure run (SQS visibility is whole seconds). */
export const E2E_RETRY_SCHEDULE = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1];

export interface LatencyFigure {
  readonly messages: number;
  readonly delivered: number;
  readonly tries: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

type EndToEnd = { latencies: number[]; sent: number; delivered: number; tries: number; errors: number };

/**
 * Section 2: end of DATA (the client's last byte) to the webhook at a local receiver, through the
 * listener, the inbound queue, parse, the delivery queue and deliver, all on the emulator. Once with
 * an endpoint that always answers, once with one that fails 30% of tries.
 */
export async function latency(load: Worker, messages: number, rate: number, failRates: number[]) {
  const results: Record<string, LatencyFigure> = {};
  for (const failRate of failRates) {
    const emulator = await startEmulatorProcess();
    try {
      const webhookUrl = await load.call<string>('startReceiver');
      const server = await startServer('pipeline', emulator.info, {
        webhookUrl,
        retrySchedule: E2E_RETRY_SCHEDULE,
      });
      try {
        const run = await load.call<EndToEnd>('endToEnd', {
          port: server.port,
          sessions: 10,
          count: messages,
          rate,
          size: 2048,
          failRate,
          timeoutMs: 60_000,
        });
        results[`fail${Math.round(failRate * 100)}`] = {
          messages: run.sent,
          delivered: run.delivered,
          tries: run.tries,
          p50: percentile(run.latencies, 50),
          p90: percentile(run.latencies, 90),
          p99: percentile(run.latencies, 99),
          max: Math.max(...run.latencies),
        };
      } finally {
        await server.stop();
        await load.call('stopReceiver');
      }
    } finally {
      await emulator.stop();
    }
  }
  return results;
}
