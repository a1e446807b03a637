import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Context, SQSEvent } from 'aws-lambda';
import { builtOnFirstUse } from '../../functions/container.ts';

const event: SQSEvent = { Records: [] };
const context = {} as Context;

describe('builtOnFirstUse', () => {
  it('builds at the first invocation, once, even for invocations that overlap', async () => {
    let builds = 0;
    const handler = builtOnFirstUse(async () => {
      builds++;
      return async () => ({ batchItemFailures: [] });
    });
    assert.equal(builds, 0, 'nothing read at init');
    await Promise.all([handler(event, context), handler(event, context)]);
    await handler(event, context);
    assert.equal(builds, 1);
  });

  it('forgets a failed build, so the next invocation reads the config again instead of failing for good', async () => {
    let builds = 0;
    const handler = builtOnFirstUse(async () => {
      builds++;
      if (builds === 1) throw new Error('config unreadable: s3://config/mailbridge.yaml');
      return async () => ({ batchItemFailures: [{ itemIdentifier: 'built' }] });
    });
    await assert.rejects(handler(event, context), /config unreadable/);
    assert.deepEqual(await handler(event, context), { batchItemFailures: [{ itemIdentifier: 'built' }] });
    assert.equal(builds, 2);
  });
});
