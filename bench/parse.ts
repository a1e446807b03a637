import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import { parseMime } from '../functions/parse/index.ts';

// Parse throughput of the streaming parser used by functions/parse (attachments hashed as they stream,
// as the S3 sink does) against mailparser's simpleParser on the same bytes. Prints MB/s and ratios.

function message(textBytes: number, attachments: number[]): Buffer {
  const text = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(Math.ceil(textBytes / 57));
  const parts = [
    'From: Alice <alice@sender.test>\r\nTo: support@example.test\r\nSubject: bench\r\n',
    'Message-ID: <bench@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n',
    `--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text.slice(0, textBytes).replace(/.{76}/g, '$&\r\n')}\r\n`,
    ...attachments.map(
      (size, index) =>
        `--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f${index}.bin"\r\n` +
        `Content-Transfer-Encoding: base64\r\n\r\n${randomBytes(size).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
    ),
    '--B--\r\n',
  ];
  return Buffer.from(parts.join(''));
}

const chunks = (raw: Buffer) => {
  const list: Buffer[] = [];
  for (let at = 0; at < raw.length; at += 64 * 1024) list.push(raw.subarray(at, at + 64 * 1024));
  return list;
};

async function streaming(raw: Buffer): Promise<void> {
  await parseMime(Readable.from(chunks(raw)), async (attachment) => {
    const hash = createHash('sha256');
    for await (const chunk of attachment.content) hash.update(chunk);
    return hash.digest('hex');
  });
}

async function simple(raw: Buffer): Promise<void> {
  await simpleParser(Readable.from(chunks(raw)), { skipTextToHtml: true, skipImageLinks: true });
}

async function mbPerSecond(
  run: (raw: Buffer) => Promise<void>,
  raw: Buffer,
  budgetBytes: number,
): Promise<number> {
  const rounds = Math.max(3, Math.ceil(budgetBytes / raw.length));
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) await run(raw);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (raw.length * rounds) / 1e6 / seconds;
}

const cases: [string, Buffer][] = [
  ['2 KB text', message(1800, [])],
  ['100 KB text + attachment', message(20_000, [55_000])],
  ['10 MB, two attachments', message(50_000, [3_700_000, 3_700_000])],
];
console.log('case                        size      streaming MB/s  simpleParser MB/s  ratio');
for (const [name, raw] of cases) {
  const budget = raw.length > 1e6 ? 40e6 : 4e6;
  // Warm both up, then alternate and keep each one's best of three so JIT and GC order even out.
  await mbPerSecond(simple, raw, budget / 4);
  await mbPerSecond(streaming, raw, budget / 4);
  let ours = 0;
  let reference = 0;
  for (let round = 0; round < 3; round++) {
    reference = Math.max(reference, await mbPerSecond(simple, raw, budget));
    ours = Math.max(ours, await mbPerSecond(streaming, raw, budget));
  }
  console.log(
    `${name.padEnd(26)}  ${(raw.length / 1024).toFixed(0).padStart(6)} KB  ${ours.toFixed(1).padStart(14)}  ${reference.toFixed(1).padStart(17)}  ${(ours / reference).toFixed(2)}×`,
  );
}
