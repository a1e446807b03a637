/**
 * The parts that emit metrics, as the `service` dimension names them (each part's Powertools
 * `serviceName`; the API's comes from its access log).
 */
export const METRIC_SERVICES = {
  listener: 'listener',
  parse: 'parse',
  deliver: 'deliver',
  api: 'api',
} as const;
export type MetricService = keyof typeof METRIC_SERVICES;

/**
 * Every metric mailbridge emits in the `mailbridge` namespace, by the part that emits it, each with
 * the dimensions it carries besides `service`. The one vocabulary: the alarms and the dashboard
 * (infra/monitoring.ts) read their names from here, and it lives in core/ so that the parts that
 * emit them can take them from here too; a name missing here cannot be alarmed on.
 */
export const METRICS = {
  listener: {
    connections: [],
    accepted: [],
    bytes: [],
    s3_failures: [],
    sqs_failures: [],
    /** One series per refusal reason: relay_denied, too_large, dnsbl, rate_limited, spam, virus, … */
    rejected: ['reason'],
    /** Content verdicts: `scanner` rspamd or clamd, `verdict` ham, spam, clean or infected. */
    scan_verdicts: ['scanner', 'verdict'],
    /** No verdict: `reason` timeout, stalled, error, busy or too_large (see core/filtering UnavailableReason). */
    scanner_unavailable: ['scanner', 'reason'],
    /** From the end of DATA to both verdicts, milliseconds. */
    scan_ms: [],
    /** Stored and logged but held back from delivery: `reason` spam, virus, scanner_unavailable. */
    quarantined: ['reason'],
    /** Peak share of `limits.maxConnections` in use during the minute, %: what the service scales out on. */
    session_usage: [],
  },
  parse: {
    parse_errors: [],
    unrouted_recipients: [],
    raw_mismatch: [],
    duplicates: [],
    messages_parsed: [],
    deliveries_queued: [],
    /** A route's stored payload had its text or HTML body cut to fit the size limit. */
    payloads_truncated: [],
  },
  deliver: {
    delivered: [],
    retried: [],
    /** By the dead-letter reason (`exhausted`, `rejected`, `parked`, …). */
    dead_lettered: ['reason'],
    delivery_latency: [],
    parked: [],
    endpoint_disabled: [],
  },
  api: {
    /** Requests API Gateway answered 429 (over the stage's rate or burst), counted from the access log. */
    throttled: [],
  },
} as const satisfies Record<MetricService, Record<string, readonly string[]>>;

/** A metric name of one part. */
export type MetricName<S extends MetricService> = keyof (typeof METRICS)[S] & string;

/**
 * The control plane's metrics (core/control: the message log writer and route sync). They are
 * emitted under the `service` of whichever part runs the writer or the sync: the listener, parse
 * and deliver.
 */
export const CONTROL_METRICS = {
  /** A message log write failed and will be retried. */
  ControlLogWriteFailures: [],
  /** A log event was dropped: the writer's queue was full while the store kept failing. */
  ControlLogDropped: [],
  /**
   * A message log write the store refused for good (invalid, or not allowed: a ValidationException
   * or an IAM denial), dropped instead of retried; the message itself goes on.
   */
  ControlLogRejected: [],
  /** A refusal beyond the per-minute caps was counted but not logged. */
  RefusalsSampledOut: [],
  /** A read of the route and domain change feed failed; the index in force stays as it was. */
  RouteSyncFailures: [],
} as const satisfies Record<string, readonly string[]>;
export type ControlMetricName = keyof typeof CONTROL_METRICS;

/**
 * The parts that run the message log writer or route sync, hence emit {@link CONTROL_METRICS}: the
 * API writes its `retried` events through a writer too.
 */
export const CONTROL_METRIC_SERVICES = [
  'listener',
  'parse',
  'deliver',
  'api',
] as const satisfies readonly MetricService[];
