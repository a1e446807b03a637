import { Readable, Writable } from 'node:stream';
import nodemailer from 'nodemailer';
import { EICAR, GTUBE } from './scanners.ts';

const HEADER = [
  'From: Alice <alice@sender.test>',
  'To: support@example.test',
  'Date: Thu, 03 Dec 2026 10:00:00 +0000',
  'Message-ID: <scan-test@sender.test>',
  'MIME-Version: 1.0',
].join('\r\n');

export const CLEAN = `${HEADER}\r\nSubject: Lunch\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nShall we meet for lunch tomorrow at noon?\r\n`;

export const SPAM = `${HEADER}\r\nSubject: Test\r\nContent-Type: text/plain\r\n\r\n${GTUBE}\r\n`;

/** The EICAR file as a base64 attachment: clamd must decode the MIME part to find it (ScanMail). */
export const INFECTED = [
  HEADER,
  'Subject: Invoice',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain',
  '',
  'Please find the invoice attached.',
  '--b1',
  'Content-Type: application/octet-stream; name="invoice.com"',
  'Content-Disposition: attachment; filename="invoice.com"',
  'Content-Transfer-Encoding: base64',
  '',
  EICAR.toString('base64'),
  '--b1--',
  '',
].join('\r\n');

/**
 * A message of `bytes` made as it is read, 64 KiB at a time as smtp-server hands DATA over: a
 * text body of base64-looking lines, never in memory whole. `onProgress` sees the bytes so far.
 */
export function largeMessage(bytes: number, onProgress: (sent: number) => void = () => {}): Readable {
  const head = Buffer.from(`${HEADER}\r\nSubject: Large\r\nContent-Type: text/plain\r\n\r\n`);
  const line = Buffer.from(
    `${'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0'}\r\n`,
  );
  const block = Buffer.concat([head, ...Array.from({ length: Math.ceil(65536 / line.length) }, () => line)]);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= bytes) return void this.push(null);
      const start = sent === 0 ? 0 : head.length;
      // Views of one block, no copies: what the test measures is what the pipeline holds.
      const chunk = block.subarray(start, start + Math.min(65536, bytes - sent));
      sent += chunk.length;
      onProgress(sent);
      this.push(chunk);
    },
  });
}

/** A stand-in for the S3 upload: takes every chunk and keeps only the count. */
export function countingSink(): Writable & { bytes: number } {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      sink.bytes += chunk.length;
      callback();
    },
  }) as Writable & { bytes: number };
  sink.bytes = 0;
  return sink;
}

/**
 * Sends one message with nodemailer from `localAddress` (any 127/8 address); resolves with the
 * final reply, or the refusal (of the first refused recipient, or of the transaction).
 */
export async function sendFrom(
  port: number,
  options: { from: string; to: readonly string[]; body: string; localAddress?: string },
): Promise<{ code: number | undefined; response: string | undefined }> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    localAddress: options.localAddress ?? '127.0.0.1',
  });
  try {
    const info = await transport.sendMail({
      envelope: { from: options.from, to: [...options.to] },
      raw: options.body,
    });
    return { code: 250, response: info.response };
  } catch (error) {
    const failure = error as {
      responseCode?: number;
      response?: string;
      rejectedErrors?: { response: string }[];
    };
    return {
      code: failure.responseCode,
      response: failure.rejectedErrors?.[0]?.response ?? failure.response,
    };
  } finally {
    transport.close();
  }
}
