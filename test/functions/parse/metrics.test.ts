import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CONTROL_METRICS, METRICS } from '../../../core/index.ts';
import { CapturedMetrics } from '../../../harness/captured-metrics.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

describe('parse metrics', () => {
  let h: ParseHarness;
  before(async () => {
    h = await startParseHarness();
  });
  after(() => h.close());

  it('emits only metrics of the vocabulary, each with the dimensions it declares', async () => {
    // The alarms and the dashboard read a metric by its name and dimension set; another name or set
    // is a series nobody reads.
    const metrics = new CapturedMetrics('parse');
    const parse = h.handler({ metrics });
    const plain = await h.fixture('01-plain-ascii.eml');
    const delivered = await h.store(plain);
    const unrouted = await h.store(plain, { rcptTo: ['gone@example.test', 'support@example.test'] });
    const mismatched = await h.store(plain);
    const lying = { ...mismatched, raw: { ...mismatched.raw, size: 1, sha256: '0'.repeat(64) } };
    await parse(sqsEvent([delivered, unrouted, lying]));
    await h.drainJobs();
    await h.drainDeadLetters();

    const seen = metrics.dimensionSets();
    for (const name of ['messages_parsed', 'deliveries_queued', 'unrouted_recipients', 'raw_mismatch'])
      assert.ok(seen.has(name), `${name} emitted (seen: ${[...seen.keys()].join(', ')})`);
    const declared: Record<string, readonly string[]> = { ...METRICS.parse, ...CONTROL_METRICS };
    for (const [name, sets] of seen) {
      assert.ok(name in declared, `${name} is in core/metric-names.ts`);
      assert.deepEqual([...sets], [['service', ...declared[name]!].sort().join(',')], name);
    }
  });
});
