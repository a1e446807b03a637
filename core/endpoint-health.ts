import * as z from 'zod';
import type { DeliveryOutcome } from './delivery.ts';

/** How long every try to an endpoint may fail before it is disabled: 5 days, as Svix does. */
export const DEFAULT_DISABLE_AFTER_SECONDS = 5 * 86400;

/** What is known about one endpoint; times are ISO 8601, `null` when not applicable. */
export const EndpointHealthSchema = z.object({
  /** The first try of the current run of failures; `null` while the last try succeeded. */
  firstFailureAt: z.iso.datetime().nullable(),
  /**
   * The success that last ended a run of failures. Successes of a healthy endpoint are not
   * recorded, so that they cost no write.
   */
  lastSuccessAt: z.iso.datetime().nullable(),
  /** When the endpoint was disabled; `null` while it is enabled. */
  disabledAt: z.iso.datetime().nullable(),
  /** Why it was disabled. */
  reason: z.string().nullable(),
});
export type EndpointHealth = z.infer<typeof EndpointHealthSchema>;

/** The stored object: the state and the endpoint it is about, for people reading the bucket. */
export const EndpointHealthDocumentSchema = EndpointHealthSchema.extend({ endpoint: z.string() });

/** An endpoint nothing is recorded about: enabled, no failure. */
export const HEALTHY_ENDPOINT: EndpointHealth = Object.freeze({
  firstFailureAt: null,
  lastSuccessAt: null,
  disabledAt: null,
  reason: null,
});

function formatPeriod(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/**
 * The endpoint's state after one try (Standard Webhooks, "Delivery success and failure"): any 2xx
 * enables it and ends the run of failures; a 410 Gone disables it at once; any other failure
 * starts or continues the run, and disables it once every try since the run's first has failed for
 * `disableAfterSeconds` (`null`: never, only a 410 disables). Returns `state` itself when nothing
 * changes, so the caller writes only on a change.
 */
export function nextEndpointHealth(
  state: EndpointHealth,
  outcome: DeliveryOutcome,
  nowMs: number,
  disableAfterSeconds: number | null,
): EndpointHealth {
  const now = new Date(nowMs).toISOString();
  if (outcome.class === 'delivered') {
    if (state.firstFailureAt === null && state.disabledAt === null) return state;
    return { firstFailureAt: null, lastSuccessAt: now, disabledAt: null, reason: null };
  }
  if (state.disabledAt !== null) return state;
  const firstFailureAt = state.firstFailureAt ?? now;
  if (outcome.class === 'permanent' && outcome.reason === 'gone') {
    return { ...state, firstFailureAt, disabledAt: now, reason: `410 Gone: ${outcome.error}` };
  }
  if (disableAfterSeconds !== null && nowMs - Date.parse(firstFailureAt) >= disableAfterSeconds * 1000) {
    return {
      ...state,
      firstFailureAt,
      disabledAt: now,
      reason: `every try failed for ${formatPeriod(disableAfterSeconds)} (since ${firstFailureAt}); last: ${outcome.error}`,
    };
  }
  return state.firstFailureAt === null ? { ...state, firstFailureAt } : state;
}

/** One endpoint's state as read, with the version a conditional write must match. */
export interface StoredEndpointHealth {
  readonly state: EndpointHealth;
  /** The object's ETag; `undefined` when no object exists (a healthy endpoint). */
  readonly etag: string | undefined;
}

/** The endpoint health port: core/aws implements it over S3. */
export interface EndpointHealthStore {
  read(endpoint: string): Promise<StoredEndpointHealth>;
  /**
   * Writes `state` only if the object is still the one read (`etag`, or absent when `undefined`);
   * resolves false when another writer came first, so the caller reads again and recomputes.
   */
  write(endpoint: string, state: EndpointHealth, etag: string | undefined): Promise<boolean>;
  /** Forgets the endpoint: enabled, no failure. */
  remove(endpoint: string): Promise<void>;
}
