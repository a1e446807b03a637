import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyAttempt,
  DEFAULT_RETRY_SCHEDULE_SECONDS,
  decideNext,
  longestRetrySeconds,
  MAX_RETRY_DELAY_SECONDS,
  MAX_ROUTE_TIMEOUT_SECONDS,
  parseRetryAfter,
  QUEUE_SETTINGS,
  tryTimeoutMs,
} from '../../core/index.ts';

const NOW = Date.parse('2026-11-20T10:00:00Z');
const response = (status: number, headers: { retryAfter?: string; location?: string; body?: string } = {}) =>
  ({ kind: 'response', status, body: '', ...headers }) as const;

describe('classifyAttempt', () => {
  it('counts every 2xx as delivered', () => {
    for (const status of [200, 201, 202, 204, 299]) {
      assert.deepEqual(classifyAttempt(response(status), NOW), { class: 'delivered', status });
    }
  });

  it('retries 408, 409, 425, 429, 5xx, timeouts and network errors', () => {
    for (const status of [408, 409, 425, 429, 500, 502, 503, 504, 599]) {
      assert.equal(classifyAttempt(response(status), NOW).class, 'retry', `HTTP ${status}`);
    }
    assert.equal(classifyAttempt({ kind: 'timeout', error: 'no response' }, NOW).class, 'retry');
    assert.equal(classifyAttempt({ kind: 'network', error: 'ECONNRESET' }, NOW).class, 'retry');
  });

  it('makes other 4xx permanent, 410 Gone as its own reason', () => {
    for (const status of [400, 401, 403, 404, 405, 413, 422]) {
      assert.deepEqual(classifyAttempt(response(status, { body: ' bad\n request ' }), NOW), {
        class: 'permanent',
        reason: 'permanent',
        status,
        error: `HTTP ${status}: bad request`,
      });
    }
    assert.equal(classifyAttempt(response(410), NOW).class, 'permanent');
    assert.equal((classifyAttempt(response(410), NOW) as { reason: string }).reason, 'gone');
  });

  it('does not follow a redirect and names its target', () => {
    assert.deepEqual(classifyAttempt(response(301, { location: 'https://elsewhere.example/' }), NOW), {
      class: 'permanent',
      reason: 'permanent',
      status: 301,
      error: 'HTTP 301: redirect to https://elsewhere.example/ not followed',
    });
  });

  it('makes a refused address permanent as blocked', () => {
    assert.deepEqual(classifyAttempt({ kind: 'blocked', error: 'refused address' }, NOW), {
      class: 'permanent',
      reason: 'blocked',
      error: 'refused address',
    });
  });

  it('carries Retry-After on a retryable status', () => {
    const outcome = classifyAttempt(response(429, { retryAfter: '120' }), NOW);
    assert.equal(outcome.class === 'retry' && outcome.retryAfterSeconds, 120);
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP-dates (RFC 9110 §10.2.3)', () => {
    assert.equal(parseRetryAfter('2', NOW), 2);
    assert.equal(parseRetryAfter(' 0 ', NOW), 0);
    assert.equal(parseRetryAfter('Fri, 20 Nov 2026 10:05:00 GMT', NOW), 300);
    assert.equal(parseRetryAfter('Friday, 20-Nov-26 10:05:00 GMT', NOW), 300);
    assert.equal(parseRetryAfter('Fri Nov 20 10:05:00 2026', NOW), 300);
  });

  it('treats a past date as now, and caps what SQS visibility cannot hold', () => {
    assert.equal(parseRetryAfter('Fri, 20 Nov 2026 09:00:00 GMT', NOW), 0);
    assert.equal(parseRetryAfter('86400', NOW), MAX_RETRY_DELAY_SECONDS);
    assert.ok(MAX_RETRY_DELAY_SECONDS <= 12 * 3600);
  });

  it('ignores what it cannot read', () => {
    for (const value of [undefined, '', '-5', '1.5', 'soon'])
      assert.equal(parseRetryAfter(value, NOW), undefined);
  });
});

describe('decideNext', () => {
  const failure = { class: 'retry', status: 500, error: 'HTTP 500' } as const;

  it('walks the default schedule, then gives up as exhausted', () => {
    const waits = DEFAULT_RETRY_SCHEDULE_SECONDS.map((_, index) => {
      const decision = decideNext(failure, DEFAULT_RETRY_SCHEDULE_SECONDS, index + 1);
      return decision.action === 'retry' ? decision.delaySeconds : decision.reason;
    });
    assert.deepEqual(waits, [5, 300, 1800, 7200, 18000, 36000, 36000]);
    assert.deepEqual(decideNext(failure, DEFAULT_RETRY_SCHEDULE_SECONDS, 8), {
      action: 'dead-letter',
      reason: 'exhausted',
    });
  });

  it('waits longer when Retry-After asks for it, never shorter, within the cap', () => {
    assert.deepEqual(decideNext({ ...failure, retryAfterSeconds: 2 }, [1, 1], 1), {
      action: 'retry',
      delaySeconds: 2,
    });
    assert.deepEqual(decideNext({ ...failure, retryAfterSeconds: 2 }, [60], 1), {
      action: 'retry',
      delaySeconds: 60,
    });
    assert.deepEqual(decideNext(failure, [86400], 1), {
      action: 'retry',
      delaySeconds: MAX_RETRY_DELAY_SECONDS,
    });
  });

  it('waits at least one whole second, so a retry never makes the job visible at once', () => {
    assert.deepEqual(decideNext(failure, [0], 1), { action: 'retry', delaySeconds: 1 });
    assert.deepEqual(decideNext(failure, [0.2], 1), { action: 'retry', delaySeconds: 1 });
    assert.deepEqual(decideNext(failure, [1.5], 1), { action: 'retry', delaySeconds: 2 });
  });

  it('sends permanent failures to the DLQ at once, with their reason', () => {
    const gone = { class: 'permanent', reason: 'gone', status: 410, error: 'HTTP 410' } as const;
    assert.deepEqual(decideNext(gone, [5, 5], 1), { action: 'dead-letter', reason: 'gone' });
  });

  it('with an empty schedule, tries once', () => {
    assert.deepEqual(decideNext(failure, [], 1), { action: 'dead-letter', reason: 'exhausted' });
  });
});

describe('tryTimeoutMs', () => {
  it('is the route timeout while the invocation has time for it, less when it has not', () => {
    assert.equal(tryTimeoutMs(15), 15_000);
    assert.equal(tryTimeoutMs(15, 60_000), 15_000);
    assert.equal(tryTimeoutMs(50, 40_000), 30_000);
    assert.equal(tryTimeoutMs(15, 10_500), undefined, 'under a second left for the try: none');
  });

  it('lets the longest route timeout fit in the deliver function', () => {
    assert.equal(
      tryTimeoutMs(MAX_ROUTE_TIMEOUT_SECONDS, QUEUE_SETTINGS.functionTimeoutSeconds.deliver * 1000),
      MAX_ROUTE_TIMEOUT_SECONDS * 1000,
    );
  });
});

describe('longestRetrySeconds', () => {
  it('counts every wait as stretched to the Retry-After cap, plus a function timeout per try', () => {
    const tryTime = QUEUE_SETTINGS.functionTimeoutSeconds.deliver;
    assert.equal(longestRetrySeconds([]), tryTime);
    assert.equal(longestRetrySeconds([5, 300]), 2 * (MAX_RETRY_DELAY_SECONDS + tryTime) + tryTime);
    assert.ok(
      longestRetrySeconds(DEFAULT_RETRY_SCHEDULE_SECONDS) < QUEUE_SETTINGS.delivery.retentionDays * 86_400,
    );
  });
});
