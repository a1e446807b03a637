import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { StreamMeter } from '../../core/index.ts';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Feeds `message` in chunks of `size`; returns the meter and the chunk indexes that reported a first bare LF. */
function meter(message: Buffer, size: number): { meter: StreamMeter; firsts: number[] } {
  const result = new StreamMeter();
  const firsts: number[] = [];
  for (let at = 0, index = 0; at < message.length; at += size, index++) {
    if (result.update(message.subarray(at, at + size))) firsts.push(index);
  }
  return { meter: result, firsts };
}

describe('StreamMeter', () => {
  const clean = Buffer.from('Subject: hi\r\n\r\nline one\r\nline two\r\n');

  it('counts and hashes the chunks as the whole message, whatever the chunking', () => {
    for (const size of [1, 2, 7, clean.length]) {
      const { meter: m, firsts } = meter(clean, size);
      assert.equal(m.bytes, clean.length);
      assert.equal(m.digest(), sha256(clean));
      assert.equal(m.bareLf, false, `chunks of ${size}: a CRLF split between chunks is not a bare LF`);
      assert.deepEqual(firsts, []);
    }
  });

  it('finds a bare LF once, in the chunk that holds it', () => {
    const message = Buffer.from('Subject: hi\r\n\r\nsmuggled\n.\r\nmore\nlines\r\n');
    const { meter: m, firsts } = meter(message, 4);
    assert.equal(m.bareLf, true);
    assert.deepEqual(firsts, [Math.floor(message.indexOf('\n.') / 4)]);
    assert.equal(m.digest(), sha256(message));
  });

  it('a bare LF at the very start counts', () => {
    assert.equal(meter(Buffer.from('\nx'), 1).meter.bareLf, true);
  });

  it('an empty message: no bytes, the SHA-256 of nothing', () => {
    const m = new StreamMeter();
    assert.equal(m.bytes, 0);
    assert.equal(m.digest(), sha256(Buffer.alloc(0)));
  });
});
