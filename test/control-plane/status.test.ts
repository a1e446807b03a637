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

  it('counts a recipient no route took at parse (its route removed after RCPT: in the inbound DLQ) as failed', () => {
    const unrouted = (...jobs: ReturnType<typeof job>[]): TimelineEvent => ({
      ...(parsed(...jobs) as Extract<TimelineEvent, { type: 'parsed' }>),
      unrouted: ['gone@y.test'],
    });
    assert.equal(deriveStatus([received(), unrouted()]), 'failed');
    assert.equal(
      deriveStatus([received(), unrouted(a), attempt(a, 200), delivered(a)]),
      'partially_delivered',
    );
    assert.equal(deriveStatus([received(), unrouted(a)]), 'delivering', 'one recipient settled, one to try');
    // A retry once a route takes it again: the new parse's list is the one that counts.
    const retried: TimelineEvent = {
      at: at(),
      type: 'retried',
      by: 'cli',
      route: null,
      jobs: [],
      reparse: true,
    };
    assert.equal(
      deriveStatus([received(), unrouted(), retried, parsed(b), attempt(b, 200), delivered(b)]),
      'delivered',
    );
    assert.equal(deriveStatus([received(), parsed()]), 'parsed', 'nothing queued, nobody unrouted');
  });

  it('is failed when parse gave up (inbound DLQ), and follows the parse of a redrive after it', () => {
    const gaveUp: TimelineEvent = { at: at(), type: 'parse_failed', tries: 5, error: 'NoSuchKey' };
    assert.equal(deriveStatus([received(), gaveUp]), 'failed');
    const redriven: TimelineEvent = { at: at(), type: 'retried', by: 'cli', route: null, jobs: [] };
    assert.equal(deriveStatus([received(), gaveUp, redriven, parsed(a)]), 'parsed');
    assert.equal(deriveStatus([received(), gaveUp, redriven, parsed(a), delivered(a)]), 'delivered');
  });
});

describe('deriveStatus after a retry or replay', () => {
  const a = job('a');
  const b = job('b');
  /** `POST /v1/messages/{id}/retry` or `…/release`: the message goes back through parse. */
  const retried = (route: string | null, release = false): TimelineEvent => ({
    at: at(),
    type: 'retried',
    by: 'key_0123456789abcdef',
    route,
    jobs: [],
    reparse: true,
    ...(release ? { release } : {}),
  });
  /** Each step of a timeline and the status after it. */
  const statuses = (...timeline: TimelineEvent[]) =>
    timeline.map((_, i) => deriveStatus(timeline.slice(0, i + 1)));

  it("counts the re-parse's jobs for the route asked, not the ones it no longer queues (its endpoint changed)", () => {
    const moved = job('a', 'https://a.test/new');
    assert.deepEqual(
      statuses(
        received(),
        parsed(a),
        attempt(a, null),
        dead(a),
        retried('a'),
        parsed(moved),
        attempt(moved, 200),
        delivered(moved),
      ).slice(3),
      ['failed', 'delivering', 'delivering', 'delivering', 'delivered'],
    );
  });

  it('counts what a retry of every route re-routed to, not the deleted route it went to before', () => {
    const timeline = [received(), parsed(a), delivered(a), retried(null), parsed(b)];
    assert.equal(deriveStatus(timeline), 'delivering');
    assert.equal(awaitsFollowUp(timeline), false);
    assert.equal(deriveStatus([...timeline, delivered(b)]), 'delivered');
  });

  it('is not settled until the re-parse shows, and its jobs are pending again even if delivered before', () => {
    const asked = [received(), parsed(a, b), delivered(a), dead(b), retried('b')];
    assert.equal(deriveStatus(asked), 'delivering', 'a is delivered, b is being parsed again');
    assert.equal(awaitsFollowUp(asked), false, 'the re-parse and its first try are no follow-ups');
    assert.equal(deriveStatus([...asked, parsed(b)]), 'delivering');
    assert.equal(deriveStatus([...asked, parsed(b), delivered(b)]), 'delivered');
    const again = [received(), parsed(a), delivered(a), retried(null), parsed(a)];
    assert.equal(deriveStatus(again), 'delivering');
    assert.equal(deriveStatus([...again, delivered(a)]), 'delivered');
  });

  it("drops the route's jobs when the re-parse queues none for it (its recipients went elsewhere)", () => {
    assert.equal(
      deriveStatus([received(), parsed(a, b), delivered(a), dead(b), retried('b'), parsed()]),
      'delivered',
    );
  });

  it('holds a quarantined message again on a retry, and follows its deliveries once released', () => {
    const held: TimelineEvent = { at: at(), type: 'quarantined', route: 'a', reasons: ['spam'] };
    const heldAgain: TimelineEvent = { ...held, at: at() };
    assert.deepEqual(statuses(received(), held, parsed(), retried(null), heldAgain, parsed()).slice(1), [
      'quarantined',
      'quarantined',
      'parsed',
      'parsed',
      'quarantined',
    ]);
    assert.deepEqual(
      statuses(received(), held, parsed(), retried(null, true), parsed(a), delivered(a)).slice(3),
      ['parsed', 'parsed', 'delivered'],
    );
  });

  it('keeps the routes delivered before when a dlq redrive sends an inbound entry back to parse', () => {
    // The entry holds the recipients that routed nowhere then: its parse queues theirs only.
    const inbound: TimelineEvent = { at: at(), type: 'retried', by: 'cli', route: null, jobs: [] };
    const timeline = [received(), parsed(a), delivered(a), inbound];
    assert.equal(deriveStatus(timeline), 'delivered');
    assert.equal(deriveStatus([...timeline, parsed(b), attempt(b, 410), dead(b)]), 'partially_delivered');
  });

  it('follows a replay, which logs no parse, by the tries of its jobs', () => {
    const moved = job('b', 'https://b.test/new');
    const replayed = (route: string | null): TimelineEvent => ({
      at: at(),
      type: 'replayed',
      by: 'cli',
      route,
    });
    const timeline = [received(), parsed(a, b), delivered(a), dead(b), replayed('b')];
    assert.equal(deriveStatus(timeline), 'delivering');
    assert.equal(awaitsFollowUp(timeline), false);
    assert.deepEqual(statuses(...timeline, attempt(moved, 200), delivered(moved)).slice(5), [
      'delivering',
      'delivered',
    ]);
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
