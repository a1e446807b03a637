import { parentPort, workerData } from 'node:worker_threads';
import { readOutlookMsg } from './outlook-msg.ts';

// The isolated side of readOutlookMsgBounded: one Outlook item per worker, the answer posted back.
const { bytes, maxFiles } = workerData as { bytes: Uint8Array; maxFiles: number };
try {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  parentPort!.postMessage({ ok: true, value: readOutlookMsg(buffer, { maxFiles }) });
} catch (error) {
  parentPort!.postMessage({ ok: false, message: (error as Error).message });
}
