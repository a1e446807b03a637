import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { awaitsFollowUp, deriveStatus, type TimelineEvent } from '../../core/control/index.ts';

const job = (route: string, endpoint = `https://${route}.test/`) => ({
  route,
  endpoint,
  webhookId: `msg_${route}`,
});
let clock = Date.parse('2026-01-01T00:00:00Z');
const at = () => {
  clock += 1000;
  return new Date(clock).toISOString();
};
const received = (): TimelineEvent => ({
  at: at(),
  type: 'received',
  mailFrom: 'a@b.test',
  rcptTo: ['x@y.test'],
  size: 100,
  remoteAddress: '192.0.2.1',
  helo: 'b.test',
  tls: true,
});
const parsed = (...jobs: ReturnType<typeof job>[]): TimelineEvent => ({
  at: at(),
  type: 'parsed',
  subject: 'Hi',
  from: 'a@b.test',
  jobs,
  unrouted: [],
  warnings: [],
});
const attempt = (j: ReturnType<typeof job>, status: number | null): TimelineEvent => ({
  at: at(),
  type: 'attempt',
  ...j,
  attempt: 1,
  status,
  error: status === null ? { class: 'timeout', text: 'no answer in 15 s' } : null,
  durationMs: 12,
});
const delivered = (j: ReturnType<typeof job>): TimelineEvent => ({
  at: at(),
  type: 'delivered',
  ...j,
  status: 200,
});
const dead = (j: ReturnType<typeof job>): TimelineEvent => ({
  at: at(),
  type: 'dead_lettered',
  ...j,
  reason: 'exhausted',
  status: 503,
  error: null,
});

describe('deriveStatus', () => {
  const a = job('a');
  const b = job('b');

  it('follows a message from received to delivered', () => {
    const timeline = [received()];
    assert.equal(deriveStatus(timeline), 'received');
    timeline.push(parsed(a));
    assert.equal(deriveStatus(timeline), 'parsed');
    timeline.push(attempt(a, 503), {
      at: at(),
      type: 'retry_scheduled',
      ...a,
      attempt: 2,
      nextAttemptAt: at(),
    });
    assert.equal(deriveStatus(timeline), 'delivering');
    timeline.push(attempt(a, 200), delivered(a));
    assert.equal(deriveStatus(timeline), 'delivered');
  });

  it('is failed when every job is dead-lettered and partially delivered when only some are', () => {
    assert.equal(
      deriveStatus([received(), parsed(a, b), attempt(a, 410), dead(a), attempt(b, 500), dead(b)]),
      'failed',
    );
    assert.equal(
      deriveStatus([received(), parsed(a, b), attempt(a, 200), delivered(a), attempt(b, 410), dead(b)]),
      'partially_delivered',
    );
    // One route still trying: not final yet.
    assert.equal(deriveStatus([received(), parsed(a, b), attempt(a, 200), delivered(a)]), 'delivering');
  });

  it('keeps a delivered job delivered when an at-least-once duplicate tries again', () => {
    assert.equal(deriveStatus([received(), parsed(a), delivered(a), attempt(a, null)]), 'delivered');
  });

  it('goes back to delivering on a retry and forward again when the redriven job succeeds', () => {
    const timeline = [received(), parsed(a), attempt(a, 500), dead(a)];
    assert.equal(deriveStatus(timeline), 'failed');
    timeline.push({ at: at(), type: 'retried', by: 'cli', route: null, jobs: [a] });
    assert.equal(deriveStatus(timeline), 'delivering');
    timeline.push(attempt(a, 200), delivered(a));
    assert.equal(deriveStatus(timeline), 'delivered');
  });

  it('does not lose jobs parse queued when a delivery event is logged before the parse event', () => {
    // Writers are independent: deliver's event can reach the log first; the timeline is sorted by time anyway.
    assert.equal(deriveStatus([received(), parsed(a, b), delivered(a)]), 'delivering');
  });

  it('is parsed when no route took the message (removed between RCPT and parse)', () => {
    assert.equal(deriveStatus([received(), parsed()]), 'parsed');
  });
});

describe('awaitsFollowUp', () => {
  const a = job('a');
  const b = job('b');
  const scheduled = (j: ReturnType<typeof job>): TimelineEvent => ({
    at: at(),
    type: 'retry_scheduled',
    ...j,
    attempt: 2,
    nextAttemptAt: at(),
  });

  it('is true when each job is delivered, dead-lettered or waiting on a scheduled retry', () => {
    assert.equal(awaitsFollowUp([received(), parsed(a), attempt(a, 503), scheduled(a)]), true);
    assert.equal(
      awaitsFollowUp([
        received(),
        parsed(a, b),
        attempt(a, 200),
        delivered(a),
        attempt(b, 503),
        scheduled(b),
      ]),
      true,
    );
    assert.equal(awaitsFollowUp([received(), parsed(a), attempt(a, 410), dead(a)]), true);
  });

  it('is false while a job has its first try to come, or a retry or replay was asked', () => {
    assert.equal(awaitsFollowUp([received()]), false);
    assert.equal(awaitsFollowUp([received(), parsed()]), false);
    // b waits on its schedule, but a's first try is still to come: its answer is no follow-up.
    assert.equal(awaitsFollowUp([received(), parsed(a, b), attempt(b, 503), scheduled(b)]), false);
    const retried: TimelineEvent = { at: at(), type: 'retried', by: 'cli', route: null, jobs: [a] };
    assert.equal(awaitsFollowUp([received(), parsed(a), attempt(a, 200), delivered(a), retried]), false);
  });
});
