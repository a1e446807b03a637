import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rcptReport, run } from '../../bench/rcpt.ts';

// The RCPT benchmark at a tiny size, so it cannot rot unnoticed. Correctness only: no timing is asserted.
describe('bench: RCPT decision, tiny', () => {
  it('measures both resolvers and prints one table', () => {
    const result = run({ lookups: 2000, domains: 50 });
    assert.equal(result.routes, 500);
    assert.equal(result.domains, 50);
    assert.ok(result.router.p99Ns > 0 && result.index.p99Ns > 0);
    assert.equal(result.routerAtScale.lookups, 200);
    const table = rcptReport(result).join('\n');
    assert.match(table, /RcptIndex, 500 routes/);
  });
});
