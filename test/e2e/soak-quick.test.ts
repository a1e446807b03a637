import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSoak } from '../../harness/soak.ts';

describe('quick soak (npm run soak runs the full one)', () => {
  it('1,000 messages through S3/SQS faults, a flaky endpoint and two listener restarts: nothing lost', async () => {
    const result = await runSoak({ messages: 1000, senders: 20, timeLimitMs: 240_000 });
    assert.equal(result.restarts, 2);
    assert.ok(result.storageFaults > 0 && result.endpointTries > result.expected, 'faults were injected');
    assert.equal(result.lost, 0);
    assert.equal(result.parseDeadLettered, 0);
    assert.equal(result.unexpected, 0);
    assert.equal(result.badSignatures, 0);
    assert.equal(result.delivered + result.deadLettered, result.expected);
    assert.equal(result.accepted + result.abandoned, 1000);
    assert.ok(result.ok);
  });
});
