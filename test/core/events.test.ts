import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SQS_LIMITS, sqsBatches, sqsJson } from '../../core/index.ts';

// What SQS accepts in a message body ("Valid unicode characters": #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
const SQS_VALID = /^[\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]*$/u;

describe('sqsJson', () => {
  it('writes every string SQS would refuse with escapes, and decodes to the same value', () => {
    const value = {
      lastError: 'HTTP 500: bad \uffff and \ufffe, \u0000\u0001 controls, lone \ud800, pair 😀, ok é',
      recipients: ['ü@example.test'],
    };
    const body = sqsJson(value);
    assert.match(body, SQS_VALID);
    assert.doesNotMatch(body, /[\ud800-\udfff]/, 'no surrogates left for the local emulator to refuse');
    assert.deepEqual(JSON.parse(body), value);
  });
});

describe('sqsBatches', () => {
  it('keeps each batch within 10 entries and 1 MiB of bodies, in order', () => {
    const big = 'x'.repeat(190 * 1024);
    const bodies = [
      ...Array.from({ length: 6 }, () => big),
      ...Array.from({ length: 25 }, (_, i) => `small ${i}`),
    ];
    const batches = sqsBatches(bodies);
    assert.deepEqual(batches.flat(), bodies);
    for (const batch of batches) {
      assert.ok(batch.length <= SQS_LIMITS.batchEntries);
      assert.ok(batch.reduce((total, body) => total + Buffer.byteLength(body), 0) <= SQS_LIMITS.messageBytes);
    }
    assert.deepEqual(
      batches.map((batch) => batch.length),
      [5, 10, 10, 6],
    );
  });
});
