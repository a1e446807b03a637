import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type DeliveryFacts,
  type DeliveryOutcome,
  type DeliveryProgress,
  decideDelivery,
  type EndpointHealth,
  HEALTHY_ENDPOINT,
} from '../../core/index.ts';

const ENDPOINT = 'https://hooks.app.test/mail';
const ROUTE = { id: 'support', endpoints: [ENDPOINT], retrySchedule: [60, 300] };
const DISABLED: EndpointHealth = {
  firstFailureAt: '2026-11-15T10:00:00.000Z',
  lastSuccessAt: null,
  disabledAt: '2026-11-20T10:00:00.000Z',
  reason: '410 Gone: HTTP 410',
};
const FAILING: EndpointHealth = { ...HEALTHY_ENDPOINT, firstFailureAt: '2026-11-20T09:00:00.000Z' };

const facts = (changes: Partial<DeliveryFacts<typeof ROUTE>> = {}): DeliveryFacts<typeof ROUTE> => ({
  job: { routeId: 'support', endpoint: ENDPOINT },
  route: ROUTE,
  health: HEALTHY_ENDPOINT,
  tries: 1,
  ...changes,
});
const tried = (outcome: DeliveryOutcome, after: EndpointHealth = FAILING): DeliveryProgress => ({
  stage: 'tried',
  outcome,
  health: { before: FAILING, after },
});
const NOT_CONFIGURED = {
  action: 'dead-letter',
  reason: 'permanent',
  failure: {
    class: 'permanent',
    reason: 'permanent',
    error: 'endpoint no longer configured on route support',
  },
};
const http503 = { class: 'retry', status: 503, error: 'HTTP 503' } as const;

describe('decideDelivery', () => {
  const cases: {
    name: string;
    facts: DeliveryFacts<typeof ROUTE>;
    progress: DeliveryProgress;
    step: unknown;
  }[] = [
    {
      name: 'a job on its route, endpoint enabled: try it on that route',
      facts: facts(),
      progress: { stage: 'ready' },
      step: { action: 'try', route: ROUTE },
    },
    {
      name: 'its route is gone: permanent, untried',
      facts: facts({ route: undefined }),
      progress: { stage: 'ready' },
      step: NOT_CONFIGURED,
    },
    {
      name: 'its endpoint was taken off the route: permanent, untried',
      facts: facts({ route: { ...ROUTE, endpoints: ['https://hooks.app.test/other'] } }),
      progress: { stage: 'ready' },
      step: NOT_CONFIGURED,
    },
    {
      name: 'its endpoint is disabled: parked, untried, saying since when and why',
      facts: facts({ health: DISABLED }),
      progress: { stage: 'ready' },
      step: {
        action: 'dead-letter',
        reason: 'parked',
        failure: {
          class: 'permanent',
          reason: 'parked',
          error: 'endpoint disabled since 2026-11-20T10:00:00.000Z because 410 Gone: HTTP 410',
        },
      },
    },
    {
      name: 'no route beats a disabled endpoint: the job is not wanted at all',
      facts: facts({ route: undefined, health: DISABLED }),
      progress: { stage: 'ready' },
      step: NOT_CONFIGURED,
    },
    {
      name: 'its payload cannot be sent: permanent with the reason',
      facts: facts(),
      progress: { stage: 'no-payload', error: 'payload s3://b/k not found' },
      step: {
        action: 'dead-letter',
        reason: 'permanent',
        failure: { class: 'permanent', reason: 'permanent', error: 'payload s3://b/k not found' },
      },
    },
    {
      name: 'a 2xx: done',
      facts: facts(),
      progress: tried({ class: 'delivered', status: 204 }, HEALTHY_ENDPOINT),
      step: { action: 'done', status: 204 },
    },
    {
      name: 'a retryable failure with schedule left: retry after the scheduled wait',
      facts: facts({ tries: 2 }),
      progress: tried(http503),
      step: { action: 'retry', delaySeconds: 300, failure: http503 },
    },
    {
      name: 'a retryable failure with the schedule used up: exhausted',
      facts: facts({ tries: 3 }),
      progress: tried(http503),
      step: { action: 'dead-letter', reason: 'exhausted', failure: http503 },
    },
    {
      name: 'a permanent failure: dead-lettered with its own reason',
      facts: facts(),
      progress: tried({ class: 'permanent', reason: 'gone', status: 410, error: 'HTTP 410' }, DISABLED),
      step: {
        action: 'dead-letter',
        reason: 'gone',
        failure: { class: 'permanent', reason: 'gone', status: 410, error: 'HTTP 410' },
      },
    },
    {
      name: 'a retryable failure that disabled the endpoint: parked now, with the try’s status and error',
      facts: facts(),
      progress: tried({ ...http503, retryAfterSeconds: 30 }, DISABLED),
      step: {
        action: 'dead-letter',
        reason: 'parked',
        failure: { class: 'permanent', reason: 'parked', status: 503, error: 'HTTP 503' },
      },
    },
    {
      name: 'a retryable failure on an endpoint already disabled before the try (elsewhere): the schedule decides',
      facts: facts(),
      progress: { stage: 'tried', outcome: http503, health: { before: DISABLED, after: DISABLED } },
      step: { action: 'retry', delaySeconds: 60, failure: http503 },
    },
  ];
  for (const { name, facts: known, progress, step } of cases) {
    it(name, () => {
      assert.deepEqual(decideDelivery(known, progress as { stage: 'ready' }), step);
    });
  }
});
