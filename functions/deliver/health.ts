import {
  type DeliveryOutcome,
  type EndpointHealth,
  type EndpointHealthStore,
  HEALTHY_ENDPOINT,
  type Logger,
  nextEndpointHealth,
  type StoredEndpointHealth,
} from '../../core/index.ts';

/** How long a container trusts what it read about an endpoint. */
export const ENDPOINT_HEALTH_CACHE_MS = 30_000;

/** An endpoint's state before and after one try; `after === before` when nothing changed. */
export interface EndpointHealthChange {
  readonly before: EndpointHealth;
  readonly after: EndpointHealth;
}

/** Endpoint health as one deliver container sees it: cached reads, writes only on a change. */
export interface EndpointHealthTracker {
  /**
   * The state that decides whether to try: cached for {@link ENDPOINT_HEALTH_CACHE_MS}, but a
   * disabled state is read again first, so a re-enable takes effect at once.
   */
  current(endpoint: string): Promise<EndpointHealth>;
  /** Applies one try's outcome and stores the new state if it changed. */
  record(
    endpoint: string,
    outcome: DeliveryOutcome,
    disableAfterSeconds: number | null,
  ): Promise<EndpointHealthChange>;
}

const CONFLICT_ROUNDS = 3;

/**
 * Keeps endpoint health over a store. Health is advisory: a store that cannot be read counts as
 * enabled, and a failed write is only logged, so it never holds a delivery back nor makes the record
 * fail (which would deliver again).
 *
 * Concurrency: a change is computed again from a fresh read and written conditionally, so tries in
 * other containers are not overwritten. What a stale cache can cost: up to its age of tries to an
 * endpoint disabled elsewhere (at least once, never lost), and a success it took for "nothing to
 * record" while another container had just recorded the run's first failure.
 */
export function endpointHealthTracker(options: {
  store: EndpointHealthStore;
  now: () => number;
  logger: Logger;
}): EndpointHealthTracker {
  const { store, now, logger } = options;
  const cache = new Map<string, { at: number; state: Promise<EndpointHealth> }>();

  /** Reads the store, bypassing and refreshing the cache. */
  function load(endpoint: string): Promise<StoredEndpointHealth> {
    const read = store.read(endpoint);
    const state = read.then((stored) => stored.state);
    cache.set(endpoint, { at: now(), state });
    state.catch(() => {
      if (cache.get(endpoint)?.state === state) cache.delete(endpoint);
    });
    return read;
  }

  function cached(endpoint: string): Promise<EndpointHealth> | undefined {
    const hit = cache.get(endpoint);
    const age = hit ? now() - hit.at : Number.POSITIVE_INFINITY;
    // A clock that went back (an injected one) makes the entry as good as expired.
    return age >= 0 && age < ENDPOINT_HEALTH_CACHE_MS ? hit!.state : undefined;
  }

  async function current(endpoint: string): Promise<EndpointHealth> {
    try {
      const hit = await cached(endpoint);
      if (hit && hit.disabledAt === null) return hit;
      return (await load(endpoint)).state;
    } catch (error) {
      logger.warn('endpoint health unreadable; trying the endpoint', { endpoint, error: error as Error });
      return HEALTHY_ENDPOINT;
    }
  }

  async function record(
    endpoint: string,
    outcome: DeliveryOutcome,
    disableAfterSeconds: number | null,
  ): Promise<EndpointHealthChange> {
    let before = HEALTHY_ENDPOINT;
    try {
      before = (await cached(endpoint)) ?? (await load(endpoint)).state;
      if (nextEndpointHealth(before, outcome, now(), disableAfterSeconds) === before) {
        return { before, after: before };
      }
      // A change: computed again from what is stored now, and written only if nobody wrote since.
      for (let round = 0; round < CONFLICT_ROUNDS; round++) {
        const stored = await load(endpoint);
        before = stored.state;
        const after = nextEndpointHealth(before, outcome, now(), disableAfterSeconds);
        if (after === before) return { before, after };
        if (await store.write(endpoint, after, stored.etag)) {
          cache.set(endpoint, { at: now(), state: Promise.resolve(after) });
          return { before, after };
        }
      }
      logger.warn('endpoint health not recorded: other writers kept coming first', { endpoint });
    } catch (error) {
      logger.warn('endpoint health not recorded', { endpoint, error: error as Error });
    }
    return { before, after: before };
  }

  return { current, record };
}
