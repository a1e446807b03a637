import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sqsJson } from '../../core/index.ts';

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
