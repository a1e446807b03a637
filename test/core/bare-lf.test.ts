import assert from 'node:assert/strict';
import { it } from 'node:test';
import { BareLfScanner } from '../../core/index.ts';

const scanAll = (...chunks: string[]) => {
  const scanner = new BareLfScanner();
  const firsts = chunks.map((chunk) => scanner.scan(Buffer.from(chunk, 'latin1')));
  return { found: scanner.found, firsts };
};

it('does not take a CRLF split between two chunks for a bare LF', () => {
  assert.deepEqual(scanAll('line one\r', '\nline two\r\n'), { found: false, firsts: [false, false] });
});

it('finds a bare LF at the start of a chunk and reports only the chunk that first holds one', () => {
  assert.deepEqual(scanAll('line one\r\n', '\nline two\n', 'x\n'), {
    found: true,
    firsts: [false, true, false],
  });
});
