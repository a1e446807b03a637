import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rcptReport, run, runOverSmtp, runReload } from '../../bench/rcpt.ts';

// The RCPT benchmark at a tiny size, so it cannot rot unnoticed. Correctness only: no timing is asserted.
describe('bench: RCPT decision, tiny', () => {
  it('measures both resolvers, in process and over SMTP, and prints one table', async () => {
    const result = await run({ lookups: 2000, domains: 50 });
    assert.equal(result.routes, 500);
    assert.equal(result.domains, 50);
    assert.ok(result.router.p99Ns > 0 && result.index.p99Ns > 0);
    assert.equal(result.routerAtScale.lookups, 200);
    // Every RCPT of the SMTP run must get its 250 from both listeners, or runOverSmtp throws.
    const smtp = await runOverSmtp({ rounds: 50, domains: 50 });
    assert.equal(smtp.rounds, 50);
    assert.ok(smtp.router.p99Us > 0 && smtp.index.p99Us > 0);
    // Every RCPT's decision was timed, and each kind of recipient was asked.
    assert.ok(smtp.decisionNs.router > 0);
    assert.deepEqual(Object.keys(smtp.decisionNs.index), ['exact', 'tagged', 'glob', 'catch-all']);
    for (const ns of Object.values(smtp.decisionNs.index)) assert.ok(ns > 0);
    const reload = await runReload({ domains: 50 });
    assert.ok(reload.ms > 0 && reload.longestHoldMs > 0);
    const table = rcptReport(result, smtp, reload).join('\n');
    assert.match(
      table,
      /a full reload by route sync, listener's V8 flags: .* \| \d+ ms \| \d+\.\d ms \| \d+ MiB \|/,
    );
    assert.match(table, /RcptIndex, 500 routes/);
    assert.match(table, /listener's sender-policy heap after one RCPT to each route \| \d+\.\d MiB/);
    assert.match(table, /RCPT round trip over SMTP, config Router \(50 RCPTs\)/);
    assert.match(table, /RCPT round trip over SMTP, RcptIndex \(target p99 ≤ 1\.1×\)/);
    assert.match(
      table,
      /RcptIndex by recipient \(exact, tagged, glob, catch-all\) \| \d+ ns \| \d+ \/ \d+ \/ \d+ \/ \d+ ns/,
    );
  });
});
