import { type Metrics, MetricUnit } from '../core/index.ts';

/**
 * The listener's EMF metrics, counted in memory and published every `intervalMs` (and by
 * `flush()`), so a busy listener writes a few lines a minute rather than one per SMTP reply.
 * `rejected` carries a `reason` dimension (the SmtpError reason: relay_denied, too_large, …).
 * `session_usage` is the highest share of the session capacity (`limits.maxConnections`) in use
 * during the interval, in percent, published every interval (0 included) for autoscaling: sessions
 * that hold slots cost no CPU, so CPU alone never scales out against them.
 */
export class ListenerMetrics {
  readonly #metrics: Metrics;
  readonly #timer: NodeJS.Timeout;
  #accepted = 0;
  #acceptedBytes = 0;
  #s3Failures = 0;
  #sqsFailures = 0;
  #connections = 0;
  #rejected = new Map<string, number>();
  readonly #capacity: number;
  #sessions = 0;
  #peakSessions = 0;

  constructor(metrics: Metrics, intervalMs: number, sessionCapacity: number) {
    this.#metrics = metrics;
    this.#capacity = sessionCapacity;
    this.#timer = setInterval(() => this.flush(), intervalMs).unref();
  }

  accepted(bytes: number): void {
    this.#accepted += 1;
    this.#acceptedBytes += bytes;
  }

  rejected(reason: string): void {
    this.#rejected.set(reason, (this.#rejected.get(reason) ?? 0) + 1);
  }

  s3Failure(): void {
    this.#s3Failures += 1;
  }

  sqsFailure(): void {
    this.#sqsFailures += 1;
  }

  connection(): void {
    this.#connections += 1;
  }

  /** Sessions open now. */
  sessionsOpen(count: number): void {
    this.#sessions = count;
    this.#peakSessions = Math.max(this.#peakSessions, count);
  }

  /** Publishes what was counted since the last flush, and the session usage. */
  flush(): void {
    for (const [reason, count] of this.#rejected) {
      this.#metrics.addDimension('reason', reason);
      this.#metrics.addMetric('rejected', MetricUnit.Count, count);
      this.#metrics.publishStoredMetrics();
    }
    this.#rejected.clear();
    const counters: [string, (typeof MetricUnit)[keyof typeof MetricUnit], number][] = [
      ['accepted', MetricUnit.Count, this.#accepted],
      ['bytes', MetricUnit.Bytes, this.#acceptedBytes],
      ['s3_failures', MetricUnit.Count, this.#s3Failures],
      ['sqs_failures', MetricUnit.Count, this.#sqsFailures],
      ['connections', MetricUnit.Count, this.#connections],
    ];
    for (const [name, unit, value] of counters.filter(([, , value]) => value > 0)) {
      this.#metrics.addMetric(name, unit, value);
    }
    this.#metrics.addMetric('session_usage', MetricUnit.Percent, (100 * this.#peakSessions) / this.#capacity);
    this.#metrics.publishStoredMetrics();
    this.#peakSessions = this.#sessions;
    this.#accepted = 0;
    this.#acceptedBytes = 0;
    this.#s3Failures = 0;
    this.#sqsFailures = 0;
    this.#connections = 0;
  }

  /** Publishes the rest and stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
