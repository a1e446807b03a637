import type { Route } from './config.ts';
import type { EndpointHealth } from './endpoint-health.ts';
import type { DeadLetterReason, DeliveryJob } from './events.ts';
import { QUEUE_SETTINGS } from './queues.ts';

/** One signed webhook POST, as the deliver function hands it to a {@link WebhookSender}. */
export interface WebhookRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  /** The whole try, response included, must finish within this. */
  readonly timeoutMs: number;
}

/** What one try produced, as seen at the socket; a sender reports failures here instead of throwing. */
export type AttemptResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      /** The `Retry-After` and `Location` response headers, when sent. */
      readonly retryAfter?: string;
      readonly location?: string;
      /** The start of the response body (capped), for the DLQ entry and the logs. */
      readonly body: string;
    }
  | { readonly kind: 'timeout'; readonly error: string }
  | { readonly kind: 'network'; readonly error: string }
  /** Refused before connecting: the SSRF guard or a scheme this runtime does not allow. */
  | { readonly kind: 'blocked'; readonly error: string };

/** The webhook sender port: functions/deliver implements it with node:https and the SSRF guard. */
export type WebhookSender = (request: WebhookRequest) => Promise<AttemptResult>;

/** The class of one try's outcome (docs/architecture.md, "Delivery semantics"). */
export type DeliveryOutcome =
  | { readonly class: 'delivered'; readonly status: number }
  | {
      readonly class: 'retry';
      readonly status?: number;
      readonly error: string;
      /** The endpoint's `Retry-After`, in seconds from now, already capped. */
      readonly retryAfterSeconds?: number;
    }
  | {
      readonly class: 'permanent';
      readonly reason: Exclude<DeadLetterReason, 'exhausted'>;
      readonly status?: number;
      readonly error: string;
    };

/** A try that did not deliver. */
export type FailedOutcome = Exclude<DeliveryOutcome, { class: 'delivered' }>;

/** What to do with the job after a failed try. */
export type DeliveryDecision =
  | { readonly action: 'retry'; readonly delaySeconds: number }
  | { readonly action: 'dead-letter'; readonly reason: DeadLetterReason };

/**
 * The longest wait before a retry. Retries wait as an in-flight SQS message, and SQS allows at most
 * 12 h of visibility from the moment of receipt; 15 minutes are kept back for the batching window
 * and the function's run before the wait is set.
 */
export const MAX_RETRY_DELAY_SECONDS = 12 * 3600 - 15 * 60;

/**
 * Time kept back at the end of an invocation: reading the payload and endpoint health, signing,
 * recording the outcome and reporting the batch all happen around the try.
 */
export const INVOCATION_MARGIN_MS = 10_000;

/** The longest route `timeout`: one try and {@link INVOCATION_MARGIN_MS} fit in the deliver function's timeout. */
export const MAX_ROUTE_TIMEOUT_SECONDS =
  QUEUE_SETTINGS.functionTimeoutSeconds.deliver - INVOCATION_MARGIN_MS / 1000;

/** A try shorter than this is not worth making: the record waits for an invocation with time for it. */
const MIN_TRY_MS = 1000;

/**
 * How long a try may take: the route's timeout, or less when the invocation has less time left
 * (`remainingMs`, from the Lambda context) than that plus {@link INVOCATION_MARGIN_MS}, so a slow
 * endpoint never times out the whole batch. `undefined`: too little time left to try at all.
 */
export function tryTimeoutMs(routeTimeoutSeconds: number, remainingMs?: number): number | undefined {
  const timeout = Math.min(
    routeTimeoutSeconds * 1000,
    (remainingMs ?? Number.POSITIVE_INFINITY) - INVOCATION_MARGIN_MS,
  );
  return timeout >= MIN_TRY_MS ? timeout : undefined;
}

/**
 * The longest a job can live on the delivery queue with this retry schedule: every wait stretched
 * to {@link MAX_RETRY_DELAY_SECONDS} by an endpoint's `Retry-After`, plus one function timeout per try.
 */
export function longestRetrySeconds(schedule: readonly number[]): number {
  const tryTime = QUEUE_SETTINGS.functionTimeoutSeconds.deliver;
  return schedule.length * (MAX_RETRY_DELAY_SECONDS + tryTime) + tryTime;
}

// RFC 9110 §15: these statuses may succeed later without a change on our side.
const RETRYABLE_STATUSES = new Set([408, 409, 425, 429]);
const ERROR_BODY_CHARS = 300;
const HTTP_DATE_START = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? /;

/**
 * Seconds to wait that a `Retry-After` header asks for (RFC 9110 §10.2.3: delta-seconds or an
 * HTTP-date), at least 0 and at most {@link MAX_RETRY_DELAY_SECONDS}; `undefined` when absent or
 * unreadable.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  let seconds: number;
  if (/^\d+$/.test(text)) {
    seconds = Number(text);
  } else {
    // Date.parse takes almost anything ("1.5" is a date to V8): require a day name, as all three
    // HTTP-date forms start with one. The asctime form has no zone and means GMT, not local time.
    const zoned = text.endsWith('GMT') ? text : `${text} GMT`;
    const date = HTTP_DATE_START.test(text) ? Date.parse(zoned) : Number.NaN;
    if (Number.isNaN(date)) return undefined;
    seconds = Math.ceil((date - nowMs) / 1000);
  }
  return Math.min(Math.max(seconds, 0), MAX_RETRY_DELAY_SECONDS);
}

function statusError(status: number, body: string): string {
  const excerpt = body.replace(/\s+/g, ' ').trim().slice(0, ERROR_BODY_CHARS);
  return excerpt ? `HTTP ${status}: ${excerpt}` : `HTTP ${status}`;
}

/**
 * Classifies one try: 2xx delivered; 408, 409, 425, 429, 5xx, timeouts and network errors retried
 * (with the endpoint's `Retry-After`); 410 Gone permanent as `gone`; a refused address permanent
 * as `blocked`; every other status permanent. A 3xx is permanent: redirects are never followed
 * (the target was not checked when the route was configured), and asking again gets the same answer.
 */
export function classifyAttempt(result: AttemptResult, nowMs: number): DeliveryOutcome {
  if (result.kind === 'blocked') return { class: 'permanent', reason: 'blocked', error: result.error };
  if (result.kind !== 'response') return { class: 'retry', error: result.error };
  const { status } = result;
  if (status >= 200 && status < 300) return { class: 'delivered', status };
  if (status >= 300 && status < 400) {
    const target = result.location ? ` to ${result.location}` : '';
    return {
      class: 'permanent',
      reason: 'permanent',
      status,
      error: `HTTP ${status}: redirect${target} not followed`,
    };
  }
  const error = statusError(status, result.body);
  if (status === 410) return { class: 'permanent', reason: 'gone', status, error };
  if (status >= 500 || RETRYABLE_STATUSES.has(status)) {
    const retryAfterSeconds = parseRetryAfter(result.retryAfter, nowMs);
    return {
      class: 'retry',
      status,
      error,
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    };
  }
  return { class: 'permanent', reason: 'permanent', status, error };
}

/**
 * Decides after a failed try. `schedule` holds the waits, in seconds, before the 2nd, 3rd, … try; `tries`
 * counts the tries made, this one included. A retry waits the scheduled time, or longer when the
 * endpoint's `Retry-After` asks for it; when the schedule has no wait left the job is exhausted.
 */
export function decideNext(
  outcome: FailedOutcome,
  schedule: readonly number[],
  tries: number,
): DeliveryDecision {
  if (outcome.class === 'permanent') return { action: 'dead-letter', reason: outcome.reason };
  const wait = schedule[tries - 1];
  if (wait === undefined) return { action: 'dead-letter', reason: 'exhausted' };
  const delaySeconds = Math.min(Math.max(wait, outcome.retryAfterSeconds ?? 0), MAX_RETRY_DELAY_SECONDS);
  // SQS visibility is whole seconds; at least 1, so a retry never releases the message at once (the
  // local emulator, with persistence, even loses a message whose visibility is set to 0).
  return { action: 'retry', delaySeconds: Math.max(1, Math.ceil(delaySeconds)) };
}

/** Where a job stands when {@link decideDelivery} is asked: before its try, with no usable payload, or tried. */
export type DeliveryProgress =
  | { readonly stage: 'ready' }
  | { readonly stage: 'no-payload'; readonly error: string }
  | {
      readonly stage: 'tried';
      readonly outcome: DeliveryOutcome;
      /** The endpoint's health as the try found it and with its outcome applied. */
      readonly health: { readonly before: EndpointHealth; readonly after: EndpointHealth };
    };

/** How a job ends this receive: delivered, back later, or in the delivery DLQ. */
export type DeliveryEnd =
  | { readonly action: 'done'; readonly status: number }
  | { readonly action: 'retry'; readonly delaySeconds: number; readonly failure: FailedOutcome }
  | { readonly action: 'dead-letter'; readonly reason: DeadLetterReason; readonly failure: FailedOutcome };

/** What the deliver function does next with a job: try it (on its route as it is now), or end. */
export type DeliveryStep<R> = { readonly action: 'try'; readonly route: R } | DeliveryEnd;

/** The parts of a route the delivery policy reads. */
type PolicyRoute = Pick<Route, 'endpoints' | 'retrySchedule'>;

/** What {@link decideDelivery} knows of a job besides its progress. */
export interface DeliveryFacts<R extends PolicyRoute = PolicyRoute> {
  readonly job: Pick<DeliveryJob, 'routeId' | 'endpoint'>;
  /** The job's route as configured now; undefined when it is gone. */
  readonly route: R | undefined;
  /** The endpoint's health before the try. */
  readonly health: EndpointHealth;
  /** Tries made, this one included. */
  readonly tries: number;
}

function untried(reason: 'permanent' | 'parked', error: string): DeliveryEnd {
  return { action: 'dead-letter', reason, failure: { class: 'permanent', reason, error } };
}

/**
 * The delivery policy (docs/architecture.md, "Delivery semantics"), asked before the try and again
 * once its payload is read or its outcome known. The config may have changed since the job was
 * queued, so a job whose endpoint is no longer on its route stops, as `permanent`; a disabled
 * endpoint parks its jobs (Standard Webhooks, "Delivery success and failure"), and a try that
 * disables it parks its own retry, which would only be parked later; a payload that cannot be sent
 * stops, as `permanent`; any other failure follows the route's schedule ({@link decideNext}).
 */
export function decideDelivery<R extends PolicyRoute>(
  facts: DeliveryFacts<R>,
  progress: { readonly stage: 'ready' },
): DeliveryStep<R>;
export function decideDelivery(
  facts: DeliveryFacts,
  progress: Exclude<DeliveryProgress, { stage: 'ready' }>,
): DeliveryEnd;
export function decideDelivery<R extends PolicyRoute>(
  facts: DeliveryFacts<R>,
  progress: DeliveryProgress,
): DeliveryStep<R> {
  const { job, route, health } = facts;
  if (!route?.endpoints.includes(job.endpoint)) {
    return untried('permanent', `endpoint no longer configured on route ${job.routeId}`);
  }
  if (health.disabledAt !== null) {
    return untried('parked', `endpoint disabled since ${health.disabledAt} because ${health.reason}`);
  }
  if (progress.stage === 'ready') return { action: 'try', route };
  if (progress.stage === 'no-payload') return untried('permanent', progress.error);
  const { outcome } = progress;
  if (outcome.class === 'delivered') return { action: 'done', status: outcome.status };
  const disabledByThisTry =
    progress.health.after.disabledAt !== null && progress.health.before.disabledAt === null;
  if (disabledByThisTry && outcome.class === 'retry') {
    const { retryAfterSeconds: _wait, ...failure } = outcome;
    return {
      action: 'dead-letter',
      reason: 'parked',
      failure: { ...failure, class: 'permanent', reason: 'parked' },
    };
  }
  const next = decideNext(outcome, route.retrySchedule, facts.tries);
  return next.action === 'retry'
    ? { action: 'retry', delaySeconds: next.delaySeconds, failure: outcome }
    : { action: 'dead-letter', reason: next.reason, failure: outcome };
}
