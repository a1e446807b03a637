import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { METRICS } from '../../core/index.ts';
import { CapturedMetrics } from '../../harness/captured-metrics.ts';
import { ListenerMetrics } from '../../listener/metrics.ts';

describe('listener metrics', () => {
  it('emits each metric with the dimensions core/metric-names.ts declares for it', () => {
    // The alarms and the dashboard read a metric by the dimension set the vocabulary gives it;
    // CloudWatch keeps one series per set, so another set is a graph that stays empty.
    const captured = new CapturedMetrics('listener');
    const metrics = new ListenerMetrics(captured, 3_600_000, 10);
    metrics.connection();
    metrics.sessionsOpen(1);
    metrics.accepted(2048);
    metrics.rejected('relay_denied');
    metrics.rejected('too_large');
    metrics.s3Failure();
    metrics.sqsFailure();
    metrics.scanned(
      { status: 'scanned', score: 12, action: 'reject', symbols: [] },
      { status: 'unavailable', reason: 'timeout' },
      40,
    );
    metrics.scanned(
      { status: 'unavailable', reason: 'busy' },
      { status: 'scanned', infected: true, names: ['Eicar-Signature'] },
      25,
    );
    metrics.quarantined('spam');
    metrics.close();

    const seen = captured.dimensionSets();
    assert.deepEqual(
      [...seen.keys()].sort(),
      Object.keys(METRICS.listener).sort(),
      'every listener metric emitted',
    );
    for (const [name, sets] of seen) {
      const declared = ['service', ...METRICS.listener[name as keyof typeof METRICS.listener]]
        .sort()
        .join(',');
      assert.deepEqual([...sets], [declared], name);
    }
  });
});
