import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { readOutlookMsgBounded } from '../../functions/parse/containers.ts';
import { readTnef } from '../../functions/parse/tnef.ts';
import { sqsEvent } from '../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from '../functions/parse/harness.ts';

const MB = 1024 * 1024;
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heap = () => {
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
};

/** A compound file (MS-CFB) whose directory's sector chain points back at itself, forever. */
function loopingMsg(): Buffer {
  const header = Buffer.alloc(512);
  Buffer.from('d0cf11e0a1b11ae1', 'hex').copy(header, 0);
  header.writeUInt16LE(0x003e, 0x18);
  header.writeUInt16LE(3, 0x1a); // version 3: 512-byte sectors
  header.writeUInt16LE(0xfffe, 0x1c);
  header.writeUInt16LE(9, 0x1e);
  header.writeUInt16LE(6, 0x20);
  header.writeUInt32LE(1, 0x2c); // one FAT sector
  header.writeUInt32LE(0, 0x30); // the directory starts at sector 0
  header.writeUInt32LE(4096, 0x38);
  header.writeUInt32LE(0xfffffffe, 0x3c);
  header.writeUInt32LE(0xfffffffe, 0x44);
  for (let i = 0; i < 109; i++) header.writeUInt32LE(i === 0 ? 1 : 0xffffffff, 0x4c + i * 4);
  const fat = Buffer.alloc(512, 0xff);
  fat.writeUInt32LE(0, 0); // sector 0 → sector 0
  fat.writeUInt32LE(0xfffffffd, 4);
  return Buffer.concat([header, Buffer.alloc(512), fat]);
}

/** A TNEF stream: signature, key, then the given attributes (level, id, data). */
function tnef(attributes: [level: number, id: number, data: Buffer, claimedLength?: number][]): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt32LE(0x223e9f78, 0);
  return Buffer.concat([
    head,
    ...attributes.map(([level, id, data, claimed]) => {
      const attribute = Buffer.alloc(9);
      attribute.writeUInt8(level, 0);
      attribute.writeUInt32LE(id, 1);
      attribute.writeUInt32LE(claimed ?? data.length, 5);
      return Buffer.concat([attribute, data, Buffer.alloc(2)]);
    }),
  ]);
}
const REND = 0x00069002;
const DATA = 0x0006800f;
const TITLE = 0x00018010;

function withAttachment(name: string, type: string, bytes: Buffer): string {
  const base64 = bytes.toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    'From: Carl <carl@contoso.test>',
    'To: support@example.test',
    'Subject: hostile container',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attached',
    '--b',
    `Content-Type: ${type}; name="${name}"`,
    `Content-Disposition: attachment; filename="${name}"`,
    'Content-Transfer-Encoding: base64',
    '',
    base64,
    '--b--',
    '',
  ].join('\r\n');
}

describe('hostile container attachments', () => {
  let h: ParseHarness;
  before(async () => {
    h = await startParseHarness();
  });
  after(() => h.close());

  it('stops a .msg whose sector chain loops, by its memory or time bound, with the reason', async () => {
    await assert.rejects(
      readOutlookMsgBounded(loopingMsg(), { timeoutMs: 20_000, maxHeapMb: 32 }),
      /more than its memory bound|took over/,
    );
    await assert.rejects(readOutlookMsgBounded(loopingMsg(), { timeoutMs: 200 }), /took over 200 ms/);
  });

  it('reads a TNEF stream cut short or lying about lengths up to the lie, and caps the files', () => {
    const lying = readTnef(
      tnef([
        [2, REND, Buffer.alloc(14)],
        [2, TITLE, Buffer.from('a.txt\0')],
        [2, DATA, Buffer.from('first file')],
        [2, REND, Buffer.alloc(14)],
        [2, DATA, Buffer.from('x'), 0xfffffff0],
      ]),
    );
    assert.deepEqual(
      lying.files.map((file) => [file.filename, file.content.toString()]),
      [['a.txt', 'first file']],
    );
    assert.match(lying.warnings[0]!, /^tnef_truncated: needs 4294967280 bytes/);
    const many = readTnef(
      tnef(Array.from({ length: 5000 }, (): [number, number, Buffer] => [2, REND, Buffer.alloc(0)])),
      { maxFiles: 100 },
    );
    assert.match(many.warnings[0]!, /^tnef_too_many_files/);
    assert.throws(() => readTnef(Buffer.from('not tnef at all')), /not a TNEF stream/);
  });

  it('delivers each hostile container message with the container kept and a warning, in bounded memory', async () => {
    const cases: [string, string, Buffer, RegExp][] = [
      [
        'loop.msg',
        'application/vnd.ms-outlook',
        loopingMsg(),
        /^unpack_failed: loop\.msg: reading the \.msg attachment/,
      ],
      [
        'garbage.msg',
        'application/octet-stream',
        Buffer.from('not a compound file'),
        /^unpack_failed: garbage\.msg: not an Outlook item/,
      ],
      [
        'winmail.dat',
        'application/ms-tnef',
        Buffer.from('TNEF? no'),
        /^unpack_failed: winmail\.dat: not a TNEF stream/,
      ],
      [
        'winmail.dat',
        'application/ms-tnef',
        tnef([
          [2, REND, Buffer.alloc(0)],
          [2, DATA, Buffer.alloc(0), 0x7fffffff],
        ]),
        /^tnef_truncated: .* \(winmail\.dat\)$/,
      ],
    ];
    const baseline = heap();
    for (const [name, type, bytes, warning] of cases) {
      const event = await h.store(withAttachment(name, type, bytes));
      assert.deepEqual(await h.handler()(sqsEvent([event])), { batchItemFailures: [] }, name);
      const [job] = await h.drainJobs();
      const payload = await h.payload(job!);
      assert.equal(payload.message.attachments[0]!.filename, name, 'the container is kept');
      assert.equal(payload.message.attachments[0]!.size, bytes.length);
      assert.ok(
        payload.warnings.some((line) => warning.test(line)),
        `${name}: ${payload.warnings}`,
      );
    }
    assert.ok(heap() - baseline < 64 * MB, `heap grew by ${Math.round((heap() - baseline) / MB)} MB`);
  });
});
