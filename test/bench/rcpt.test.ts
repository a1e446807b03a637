import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rcptReport, run, runOverSmtp } from '../../bench/rcpt.ts';

// The RCPT benchmark at a tiny size, so it cannot rot unnoticed. Correctness only: no timing is asserted.
describe('bench: RCPT decision, tiny', () => {
  it('measures both resolvers, in process and over SMTP, and prints one table', async () => {
    const result = run({ lookups: 2000, domains: 50 });
    assert.equal(result.routes, 500);
    assert.equal(result.domains, 50);
    assert.ok(result.router.p99Ns > 0 && result.index.p99Ns > 0);
    assert.equal(result.routerAtScale.lookups, 200);
    // Every RCPT of the SMTP run must get its 250 from both listeners, or runOverSmtp throws.
    const smtp = await runOverSmtp({ rounds: 50, domains: 50 });
    assert.equal(smtp.rounds, 50);
    assert.ok(smtp.router.p99Us > 0 && smtp.index.p99Us > 0);
    const table = rcptReport(result, smtp, smtp).join('\n');
    assert.match(table, /RcptIndex, 500 routes/);
    assert.match(
      table,
      /RCPT round trip over SMTP, as deployed \(listener V8 flags\): config Router \(50 RCPTs\)/,
    );
    assert.match(table, /RCPT round trip over SMTP, V8's default young generation: config Router/);
    assert.equal(table.match(/\| same, RcptIndex \(target p99 ≤ 1\.1×\)/g)?.length, 2);
  });
});
