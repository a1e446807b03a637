import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_DISABLE_AFTER_SECONDS,
  type DeliveryOutcome,
  type EndpointHealth,
  endpointHealthKey,
  HEALTHY_ENDPOINT,
  nextEndpointHealth,
  parseConfig,
} from '../../core/index.ts';

const T0 = Date.parse('2026-11-20T10:00:00Z');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
const FIVE_DAYS = DEFAULT_DISABLE_AFTER_SECONDS;

const delivered: DeliveryOutcome = { class: 'delivered', status: 204 };
const serverError: DeliveryOutcome = { class: 'retry', status: 503, error: 'HTTP 503' };
const timeout: DeliveryOutcome = { class: 'retry', error: 'no response in 15 s' };
const badRequest: DeliveryOutcome = {
  class: 'permanent',
  reason: 'permanent',
  status: 400,
  error: 'HTTP 400',
};
const gone: DeliveryOutcome = { class: 'permanent', reason: 'gone', status: 410, error: 'HTTP 410: removed' };

/** Applies tries in order, each `[outcome, at]`. */
function run(tries: [DeliveryOutcome, number][], disableAfter: number | null = FIVE_DAYS): EndpointHealth {
  return tries.reduce<EndpointHealth>(
    (state, [outcome, at]) => nextEndpointHealth(state, outcome, at, disableAfter),
    HEALTHY_ENDPOINT,
  );
}

describe('nextEndpointHealth', () => {
  it('leaves a healthy endpoint alone on success: the same object, so nothing is written', () => {
    assert.equal(nextEndpointHealth(HEALTHY_ENDPOINT, delivered, T0, FIVE_DAYS), HEALTHY_ENDPOINT);
  });

  it('records the first failure of a run, and only the first', () => {
    const failing = nextEndpointHealth(HEALTHY_ENDPOINT, serverError, T0, FIVE_DAYS);
    assert.deepEqual(failing, { ...HEALTHY_ENDPOINT, firstFailureAt: iso(T0) });
    assert.equal(nextEndpointHealth(failing, timeout, T0 + DAY, FIVE_DAYS), failing);
    assert.equal(nextEndpointHealth(failing, badRequest, T0 + 2 * DAY, FIVE_DAYS), failing);
  });

  it('disables once every try has failed for the period, and says why', () => {
    const before = run([
      [serverError, T0],
      [timeout, T0 + 4 * DAY],
    ]);
    assert.equal(before.disabledAt, null);
    const after = nextEndpointHealth(before, serverError, T0 + 5 * DAY, FIVE_DAYS);
    assert.equal(after.disabledAt, iso(T0 + 5 * DAY));
    assert.equal(after.firstFailureAt, iso(T0));
    assert.equal(after.reason, `every try failed for 5d (since ${iso(T0)}); last: HTTP 503`);
  });

  it('counts the period from the first failure even with no tries in between', () => {
    const state = run([
      [serverError, T0],
      [serverError, T0 + 6 * DAY],
    ]);
    assert.equal(state.disabledAt, iso(T0 + 6 * DAY));
  });

  it('disables at once on 410 Gone', () => {
    const state = nextEndpointHealth(HEALTHY_ENDPOINT, gone, T0, FIVE_DAYS);
    assert.deepEqual(state, {
      firstFailureAt: iso(T0),
      lastSuccessAt: null,
      disabledAt: iso(T0),
      reason: '410 Gone: HTTP 410: removed',
    });
  });

  it('any 2xx ends a run of failures, so the period starts again at the next failure', () => {
    const recovered = run([
      [serverError, T0],
      [delivered, T0 + 4 * DAY],
    ]);
    assert.deepEqual(recovered, { ...HEALTHY_ENDPOINT, lastSuccessAt: iso(T0 + 4 * DAY) });
    const state = run([
      [serverError, T0],
      [delivered, T0 + 4 * DAY],
      [serverError, T0 + 5 * DAY],
      [serverError, T0 + 9 * DAY],
    ]);
    assert.equal(state.disabledAt, null);
    assert.equal(state.firstFailureAt, iso(T0 + 5 * DAY));
  });

  it('a disabled endpoint stays disabled on failure; a success (a try that raced the disable) enables it', () => {
    const disabled = nextEndpointHealth(HEALTHY_ENDPOINT, gone, T0, FIVE_DAYS);
    assert.equal(nextEndpointHealth(disabled, serverError, T0 + HOUR, FIVE_DAYS), disabled);
    assert.equal(nextEndpointHealth(disabled, gone, T0 + HOUR, FIVE_DAYS), disabled);
    assert.deepEqual(nextEndpointHealth(disabled, delivered, T0 + HOUR, FIVE_DAYS), {
      ...HEALTHY_ENDPOINT,
      lastSuccessAt: iso(T0 + HOUR),
    });
  });

  it('with no period (null) only a 410 disables', () => {
    const state = run(
      [
        [serverError, T0],
        [serverError, T0 + 60 * DAY],
      ],
      null,
    );
    assert.equal(state.disabledAt, null);
    assert.ok(nextEndpointHealth(state, gone, T0 + 61 * DAY, null).disabledAt);
  });

  it('names the state object after the URL hash, whatever the URL holds', () => {
    const key = endpointHealthKey('https://hooks.example.test/a?b=c#d');
    assert.match(key, /^endpoint-health\/[0-9a-f]{64}\.json$/);
    assert.notEqual(key, endpointHealthKey('https://hooks.example.test/a?b=d'));
  });
});

describe('route disableAfter', () => {
  const config = (route: Record<string, unknown>) =>
    parseConfig(
      {
        domains: ['example.test'],
        routes: [
          {
            id: 'r',
            match: ['*@example.test'],
            endpoints: ['https://hooks.example.test/'],
            secret: { value: 'whsec_dGVzdA==' },
            ...route,
          },
        ],
        listeners: [{ port: 0, mode: 'mx' }],
        health: { port: 0 },
      },
      { source: 'test', runtime: 'local' },
    ).routes[0]!.disableAfter;

  it('defaults to 5 days, takes a duration, and null turns the period off', () => {
    assert.equal(config({}), 5 * 86400);
    assert.equal(config({ disableAfter: '12h' }), 12 * 3600);
    assert.equal(config({ disableAfter: null }), null);
    assert.throws(() => config({ disableAfter: 'soon' }), /routes\[0\]\.disableAfter: not a duration/);
  });
});
