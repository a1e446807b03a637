/**
 * Parse throughput and memory, in a fresh process per measurement (`parse.ts <parser> <case>
 * <budget bytes>`): the streaming parser of functions/parse (attachments hashed as they stream,
 * as its S3 sink does) against mailparser's simpleParser on the same bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import { parseMime } from '../functions/parse/index.ts';
import { serve } from './ipc.ts';

export const PARSE_CASES = {
  '2 KB text': { text: 1800, attachments: [] as number[] },
  '100 KB, one attachment': { text: 20_000, attachments: [55_000] },
  '10 MB, two attachments': { text: 50_000, attachments: [3_700_000, 3_700_000] },
};
export type ParseCase = keyof typeof PARSE_CASES;
export type Parser = 'streaming' | 'simpleParser';

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

// As the raw object arrives from S3: a stream of 64 KiB chunks.
const chunks = (raw: Buffer) => {
  const list: Buffer[] = [];
  for (let at = 0; at < raw.length; at += 64 * 1024) list.push(raw.subarray(at, at + 64 * 1024));
  return list;
};

const PARSERS: Record<Parser, (raw: Buffer) => Promise<unknown>> = {
  streaming: (raw) =>
    parseMime(Readable.from(chunks(raw)), async (attachment) => {
      const hash = createHash('sha256');
      for await (const chunk of attachment.content) hash.update(chunk);
      return hash.digest('hex');
    }),
  simpleParser: (raw) =>
    simpleParser(Readable.from(chunks(raw)), { skipTextToHtml: true, skipImageLinks: true }),
};

const status = (field: string) =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;

/** One parser on one case: MB/s over about `budget` bytes, and peak RSS growth of the first parse. */
async function run(args: { parser: Parser; case: ParseCase; budget: number }) {
  const spec = PARSE_CASES[args.case];
  const raw = message(spec.text, spec.attachments);
  const parse = PARSERS[args.parser];
  // Building the input left garbage behind: collect it and restart the peak from here (needs --expose-gc).
  (globalThis as { gc?: () => void }).gc?.();
  writeFileSync('/proc/self/clear_refs', '5');
  const before = status('VmRSS');
  await parse(raw);
  const growthMiB = status('VmHWM') - before;
  const rounds = Math.max(3, Math.ceil(args.budget / raw.length));
  const started = performance.now();
  for (let i = 0; i < rounds; i++) await parse(raw);
  const seconds = (performance.now() - started) / 1000;
  return { bytes: raw.length, mbPerSecond: (raw.length * rounds) / 1e6 / seconds, growthMiB };
}

if (process.send) serve({ run });
