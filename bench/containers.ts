/**
 * What opening winmail.dat and .msg attachments costs (`node --expose-gc bench/containers.ts`):
 * a .msg is read in a worker thread with its own heap limit and deadline, against the same read on
 * the function's own thread (the reference, measured in the same run); a winmail.dat is read on
 * the function's thread; and a hostile .msg whose sector chain loops: how long until it is
 * stopped, and what the function's own heap grew by meanwhile.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { readOutlookMsgBounded } from '../functions/parse/containers.ts';
import { readOutlookMsg } from '../functions/parse/outlook-msg.ts';
import { readTnef } from '../functions/parse/tnef.ts';
import { median } from './stats.ts';

/** The base64 attachment of a fixture whose Content-Disposition names `filename`. */
function attachment(fixture: string, filename: string): Buffer {
  const eml = readFileSync(
    new URL(`../harness/fixtures/reply-by-email/${fixture}`, import.meta.url),
    'latin1',
  );
  const start = eml.indexOf('\r\n\r\n', eml.indexOf(`filename="${filename}"`)) + 4;
  return Buffer.from(eml.slice(start, eml.indexOf('\r\n\r\n--', start)).replace(/\s+/g, ''), 'base64');
}
const winmail = attachment('outlook-winmail-dat.eml', 'winmail.dat');
const msg = attachment('outlook-msg-attachment.eml', 'Quote request: 40 office chairs.msg');

async function timed(runs: number, work: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    await work();
    times.push(performance.now() - start);
  }
  return median(times);
}

function loopingMsg(): Buffer {
  const header = Buffer.alloc(512);
  Buffer.from('d0cf11e0a1b11ae1', 'hex').copy(header, 0);
  header.writeUInt16LE(0x003e, 0x18);
  header.writeUInt16LE(3, 0x1a);
  header.writeUInt16LE(0xfffe, 0x1c);
  header.writeUInt16LE(9, 0x1e);
  header.writeUInt16LE(6, 0x20);
  header.writeUInt32LE(1, 0x2c);
  header.writeUInt32LE(4096, 0x38);
  header.writeUInt32LE(0xfffffffe, 0x3c);
  header.writeUInt32LE(0xfffffffe, 0x44);
  for (let i = 0; i < 109; i++) header.writeUInt32LE(i === 0 ? 1 : 0xffffffff, 0x4c + i * 4);
  const fat = Buffer.alloc(512, 0xff);
  fat.writeUInt32LE(0, 0);
  fat.writeUInt32LE(0xfffffffd, 4);
  return Buffer.concat([header, Buffer.alloc(512), fat]);
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const tnefMs = await timed(50, () => readTnef(winmail));
const reference = await timed(50, () => readOutlookMsg(msg));
const bounded = await timed(10, () => readOutlookMsgBounded(msg));
gc();
const heapBefore = process.memoryUsage().heapUsed;
const start = performance.now();
const outcome = await readOutlookMsgBounded(loopingMsg()).then(
  () => 'read (unexpected)',
  (error: Error) => error.message,
);
const stoppedMs = performance.now() - start;
gc();
const heapGrowth = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
console.log(
  JSON.stringify(
    {
      winmail: { bytes: winmail.length, inThreadMs: Number(tnefMs.toFixed(2)) },
      msg: {
        bytes: msg.length,
        inThreadMs: Number(reference.toFixed(2)),
        boundedWorkerMs: Number(bounded.toFixed(1)),
        workerOverInThread: Number((bounded / reference).toFixed(1)),
      },
      hostileMsg: {
        outcome,
        stoppedMs: Math.round(stoppedMs),
        functionHeapGrowthMb: Number(heapGrowth.toFixed(1)),
      },
    },
    null,
    2,
  ),
);
