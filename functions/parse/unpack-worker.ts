import { parentPort, workerData } from 'node:worker_threads';
import { readOutlookMsg } from './outlook-msg.ts';
import { readTnef } from './tnef.ts';

// The isolated side of readContainerBounded: one container per worker, the answer posted back.
const { bytes, format, maxFiles } = workerData as {
  bytes: Uint8Array;
  format: 'tnef' | 'msg';
  maxFiles: number;
};
const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
try {
  const read = format === 'msg' ? readOutlookMsg : readTnef;
  parentPort!.postMessage({ ok: true, value: read(buffer, { maxFiles }) });
} catch (error) {
  parentPort!.postMessage({ ok: false, message: (error as Error).message });
}
