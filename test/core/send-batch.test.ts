import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type BatchAnswer,
  type BatchEntryFailure,
  BatchSendError,
  QueueSendError,
  SQS_LIMITS,
  sendBatch,
} from '../../core/index.ts';

type Entry = { Id: string; MessageBody: string };
const toEntry = (body: string, Id: string): Entry => ({ Id, MessageBody: body });
const bodyBytes = (body: string) => Buffer.byteLength(body);

/** An SQS stand-in that takes every entry except those `refuse` answers for, recording each call. */
function queue(
  refuse: (body: string, round: number) => Omit<BatchEntryFailure, 'Id'> | 'unreported' | undefined,
) {
  const calls: string[][] = [];
  const taken: string[] = [];
  const seen = new Map<string, number>();
  const call = async (entries: Entry[]): Promise<BatchAnswer> => {
    calls.push(entries.map((entry) => entry.MessageBody));
    const Successful: { Id: string }[] = [];
    const Failed: BatchEntryFailure[] = [];
    for (const { Id, MessageBody } of entries) {
      const round = seen.get(MessageBody) ?? 0;
      seen.set(MessageBody, round + 1);
      const refusal = refuse(MessageBody, round);
      if (refusal === 'unreported') continue;
      if (refusal) Failed.push({ Id, ...refusal });
      else {
        Successful.push({ Id });
        taken.push(MessageBody);
      }
    }
    return { Successful, Failed };
  };
  return { call, calls, taken };
}

const NO_WAIT = { retryDelaysMs: [0, 0, 0] };

describe('sendBatch', () => {
  it('sends in order in calls of at most 10 entries and 1 MiB of bodies', async () => {
    const big = 'x'.repeat(190 * 1024);
    const bodies = [
      ...Array.from({ length: 6 }, (_, i) => `${i}${big}`),
      ...Array.from({ length: 25 }, (_, i) => `small ${i}`),
    ];
    const sqs = queue(() => undefined);
    await sendBatch(bodies, toEntry, sqs.call, { what: 'jobs', bytes: bodyBytes });
    assert.deepEqual(sqs.taken, bodies);
    assert.deepEqual(
      sqs.calls.map((call) => call.length),
      [5, 10, 10, 6],
    );
    for (const call of sqs.calls) {
      assert.ok(call.reduce((total, body) => total + bodyBytes(body), 0) <= SQS_LIMITS.messageBytes);
    }
  });

  it('sends entries SQS failed on its side or did not report on again, and only those', async () => {
    const sqs = queue((body, round) => {
      if (body === 'b' && round < 2) return { SenderFault: false, Code: 'InternalError' };
      if (body === 'd' && round === 0) return 'unreported';
      return undefined;
    });
    await sendBatch(['a', 'b', 'c', 'd'], toEntry, sqs.call, { what: 'jobs', ...NO_WAIT });
    assert.deepEqual(sqs.taken.sort(), ['a', 'b', 'c', 'd']);
    assert.deepEqual(sqs.calls, [['a', 'b', 'c', 'd'], ['b', 'd'], ['b']]);
  });

  it('does not send again what failed by the sender’s fault, and names what was not taken', async () => {
    const sqs = queue((body) =>
      body === 'c'
        ? { SenderFault: true, Code: 'ReceiptHandleIsInvalid', Message: 'stale handle' }
        : undefined,
    );
    const error = await sendBatch(['a', 'b', 'c'], toEntry, sqs.call, { what: 'deletes', ...NO_WAIT }).catch(
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof BatchSendError && error instanceof QueueSendError);
    assert.deepEqual(error.unsent, [{ index: 2, reason: 'ReceiptHandleIsInvalid: stale handle' }]);
    assert.equal(error.message, 'deletes: SQS did not take 1 of 3: ReceiptHandleIsInvalid: stale handle');
    assert.deepEqual(sqs.calls, [['a', 'b', 'c']]);
    assert.deepEqual(sqs.taken, ['a', 'b']);
  });

  it('gives up on an entry SQS keeps failing after the last retry, having sent the rest', async () => {
    const sqs = queue((body) => (body === 'b' ? { SenderFault: false, Code: 'InternalError' } : undefined));
    const error = await sendBatch(['a', 'b'], toEntry, sqs.call, { what: 'jobs', ...NO_WAIT }).catch(
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof BatchSendError);
    assert.deepEqual(error.unsent, [{ index: 1, reason: 'InternalError' }]);
    assert.equal(sqs.calls.length, 4, 'the first call and three retries');
    assert.deepEqual(sqs.taken, ['a']);
  });

  it('lets a call that fails as a whole throw its own error', async () => {
    const refused = new Error('AccessDenied');
    await assert.rejects(
      sendBatch(['a'], toEntry, async () => Promise.reject(refused), { what: 'jobs' }),
      (error) => error === refused,
    );
  });

  it('makes no call for no items', async () => {
    const sqs = queue(() => undefined);
    await sendBatch([], toEntry, sqs.call, { what: 'jobs' });
    assert.deepEqual(sqs.calls, []);
  });
});
