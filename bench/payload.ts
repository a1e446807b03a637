/**
 * `node bench/payload.ts`: what one 38 MiB message costs the functions when its text is control
 * characters (each one becomes six characters of JSON), next to the reference measured in the same
 * run, a message of the same size in plain ASCII text: the stored payload's bytes, the parse
 * function's peak RSS and time, and the deliver function's peak RSS and time with the bytes the
 * endpoint received. Each function runs in a fresh process with its deployed V8 flags. Asserts nothing.
 */

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import { newMessageId, payloadKey, rawObjectKey } from '../core/index.ts';
import { emulatorClients } from '../dev/index.ts';
import { FUNCTION_V8_FLAGS } from '../infra/index.ts';
import { memoryOf, resetPeak, Worker } from './ipc.ts';
import { startEmulatorProcess } from './servers.ts';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.PAYLOAD_BENCH_MIB ?? 38) * MiB;

/** A text/plain message of `size` bytes whose lines repeat `alphabet`. */
function message(size: number, alphabet: number[]): Buffer {
  const line = Buffer.from(Array.from({ length: 998 }, (_, i) => alphabet[i % alphabet.length]!));
  const head = Buffer.from(
    'From: <bench@sender.test>\r\nTo: bench@example.test\r\nSubject: payload bench\r\nMIME-Version: 1.0\r\n' +
      'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
  );
  const crlf = Buffer.from('\r\n');
  return Buffer.concat([
    head,
    ...Array.from({ length: Math.ceil(size / 1000) }, () => Buffer.concat([line, crlf])),
  ]);
}

const CASES = {
  'ASCII text (reference)': message(
    SIZE,
    [...'The quick brown fox jumps over the lazy dog. '].map((c) => c.charCodeAt(0)),
  ),
  'control characters': message(SIZE, [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 30, 31]),
};

const emulator = await startEmulatorProcess();
const { info } = emulator;
const { s3, sqs } = emulatorClients(info.endpoint);
const spill = mkdtempSync(join(tmpdir(), 'mailbridge-payload-bench-'));
let received = 0;
const endpoint = createServer((req, res) => {
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  req.on('end', () => res.writeHead(200).end());
});
endpoint.listen(0, '127.0.0.1');
await once(endpoint, 'listening');
const webhookUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/hook`;

const arnOf = async (queueUrl: string) =>
  (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] })))
    .Attributes!.QueueArn!;
const receive = async (queueUrl: string) =>
  (
    await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['All'],
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 5,
      }),
    )
  ).Messages ?? [];

/** Runs one command in a fresh function process; its time, failed records and peak RSS growth. */
async function inFunction(command: string, args: unknown) {
  const worker = new Worker(
    './payload-process.ts',
    [JSON.stringify({ ...info, webhookUrl, spill })],
    [...FUNCTION_V8_FLAGS],
  );
  try {
    await worker.ready;
    await new Promise((resolve) => setTimeout(resolve, 200));
    resetPeak(worker.pid);
    const baseline = memoryOf(worker.pid).rss;
    const result = await worker.call<{ ms: number; failed: number }>(command, args);
    const stored = await worker.call<number>('storedBytes', args);
    return {
      ...result,
      stored,
      peakMiB: memoryOf(worker.pid).peak,
      growthMiB: memoryOf(worker.pid).peak - baseline,
    };
  } finally {
    await worker.stop();
  }
}

const rows: Record<string, Record<string, number | string>> = {};
try {
  for (const [name, raw] of Object.entries(CASES)) {
    const receivedAt = new Date();
    const id = newMessageId(receivedAt.getTime());
    const key = rawObjectKey(id, receivedAt);
    await new Upload({ client: s3, params: { Bucket: info.bucket, Key: key, Body: raw } }).done();
    const event = {
      version: 1,
      id,
      receivedAt: receivedAt.toISOString(),
      raw: {
        bucket: info.bucket,
        key,
        size: raw.length,
        sha256: createHash('sha256').update(raw).digest('hex'),
      },
      envelope: {
        mailFrom: 'bench@sender.test',
        rcptTo: ['bench@example.test'],
        helo: 'bench.sender.test',
        remoteAddress: '192.0.2.1',
        remotePort: 1,
        localPort: 25,
        tls: null,
        authUser: null,
      },
    };
    await sqs.send(
      new SendMessageCommand({ QueueUrl: info.inboundQueueUrl, MessageBody: JSON.stringify(event) }),
    );
    const stored = { key: payloadKey(id, 'bench') };
    const parse = await inFunction('parse', {
      messages: await receive(info.inboundQueueUrl),
      queueArn: await arnOf(info.inboundQueueUrl),
      ...stored,
    });
    received = 0;
    const jobs = await receive(info.deliveryQueueUrl);
    const deliver = jobs.length
      ? await inFunction('deliver', {
          messages: jobs,
          queueArn: await arnOf(info.deliveryQueueUrl),
          ...stored,
        })
      : undefined;
    rows[name] = {
      'raw MiB': raw.length / MiB,
      'payload MiB': parse.stored / MiB,
      'payload / raw': parse.stored / raw.length,
      'parse s': parse.ms / 1000,
      'parse failed records': parse.failed,
      'parse peak RSS MiB': parse.peakMiB,
      'parse RSS growth MiB': parse.growthMiB,
      'deliver s': deliver ? deliver.ms / 1000 : 'no job',
      'deliver peak RSS MiB': deliver?.peakMiB ?? 'no job',
      'deliver RSS growth MiB': deliver?.growthMiB ?? 'no job',
      'webhook body MiB': received / MiB,
    };
    console.error(`${name}: done`);
  }
} finally {
  s3.destroy();
  sqs.destroy();
  endpoint.close();
  await emulator.stop();
  rmSync(spill, { recursive: true, force: true });
}

const round = (value: number | string) => (typeof value === 'number' ? Number(value.toFixed(2)) : value);
console.table(
  Object.fromEntries(
    Object.entries(rows).map(([name, row]) => [
      name,
      Object.fromEntries(Object.entries(row).map(([k, v]) => [k, round(v)])),
    ]),
  ),
);
const [reference, hostile] = Object.values(rows) as Record<string, number>[];
const ratio = (field: string) =>
  typeof hostile![field] === 'number' && typeof reference![field] === 'number'
    ? round(hostile![field]! / reference![field]!)
    : 'n/a';
console.log(
  `control characters / ASCII reference: payload ×${ratio('payload MiB')}, parse peak RSS ×${ratio('parse peak RSS MiB')}, ` +
    `parse time ×${ratio('parse s')}, deliver peak RSS ×${ratio('deliver peak RSS MiB')}, deliver time ×${ratio('deliver s')}`,
);
