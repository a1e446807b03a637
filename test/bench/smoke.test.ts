import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from '../../bench/ipc.ts';
import type { LoadResult } from '../../bench/load-process.ts';
import {
  type EmulatorInfo,
  type RunningServer,
  startEmulatorProcess,
  startServer,
} from '../../bench/servers.ts';

// Runs tiny bench scenarios end to end (separate processes, real sockets, the emulator) so the bench
// cannot rot unnoticed. Correctness only: no timing is asserted.
describe('bench: tiny scenarios end to end', () => {
  let load: Worker;
  let emulator: { info: EmulatorInfo; stop: () => Promise<void> };
  let listener: RunningServer;

  before(async () => {
    load = new Worker('./load-process.ts');
    await load.ready;
    emulator = await startEmulatorProcess();
    listener = await startServer('listener', emulator.info);
  });

  after(async () => {
    await listener?.stop();
    await emulator?.stop();
    await load?.stop();
  });

  it('the storage floor stores messages and queues their events without errors', async () => {
    const result = await load.call<LoadResult>('floor', {
      endpoint: emulator.info.endpoint,
      bucket: emulator.info.bucket,
      queueUrl: emulator.info.inboundQueueUrl,
      size: 2048,
      concurrency: 2,
      durationMs: 200,
    });
    assert.equal(result.errors, 0, result.firstError);
    assert.ok(result.messages > 0);
    assert.ok(result.bytes >= result.messages * 2048);
  });

  it('the SMTP load generator gets 250 from the listener on reused and per-message connections', async () => {
    for (const reuse of [true, false]) {
      const result = await load.call<LoadResult>('smtp', {
        port: listener.port,
        size: 2048,
        sessions: 2,
        reuse,
        durationMs: 200,
      });
      assert.equal(result.errors, 0, result.firstError);
      assert.ok(result.messages > 0);
    }
  });
});
