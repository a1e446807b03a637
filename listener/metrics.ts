import type { SpamScan, VirusScan } from '../core/filtering/index.ts';
import { type MetricName, type Metrics, MetricUnit } from '../core/index.ts';
import type { FilterReport } from './filtering/index.ts';

// Powertools publishes on its own once a metric holds this many values; keep under it.
const MAX_SCAN_TIMES = 100;
// Routes judge the score against their own thresholds; the metric counts by rspamd's own actions,
// whose default "add header" level (6) is the routes' default threshold.
const RSPAMD_HAM = new Set(['no action', 'greylist']);

/**
 * The listener's EMF metrics, counted in memory and published every `intervalMs` (and by
 * `flush()`), so a busy listener writes a few lines a minute rather than one per SMTP reply.
 * `rejected` carries a `reason` dimension (the SmtpError reason: relay_denied, too_large, …);
 * the content scans count `scan_verdicts` by scanner and verdict, `scanner_unavailable` by scanner
 * and reason (a scanner that is off is not counted), `scan_ms` per message and `quarantined` by
 * reason (names in core/metric-names.ts, which the alarms and the dashboard read).
 * `session_usage` is the highest share of the session capacity (`limits.maxConnections`) in use
 * during the interval, in percent, published every interval (0 included) for autoscaling: sessions
 * that hold slots cost no CPU, so CPU alone never scales out against them.
 */
export class ListenerMetrics implements FilterReport {
  readonly #metrics: Metrics;
  readonly #timer: NodeJS.Timeout;
  #accepted = 0;
  #acceptedBytes = 0;
  #s3Failures = 0;
  #sqsFailures = 0;
  #connections = 0;
  #rejected = new Map<string, number>();
  /** Counts by dimension values, per metric: `scanner\0verdict` and the like. */
  readonly #dimensioned = new Map<MetricName<'listener'>, Map<string, number>>();
  #scanTimes: number[] = [];
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

  scanned(spam: SpamScan, virus: VirusScan, ms: number): void {
    const scans = [
      ['rspamd', spam, spam.status === 'scanned' && (RSPAMD_HAM.has(spam.action) ? 'ham' : 'spam')],
      ['clamd', virus, virus.status === 'scanned' && (virus.infected ? 'infected' : 'clean')],
    ] as const;
    for (const [scanner, scan, verdict] of scans) {
      if (scan.status === 'scanned') this.#count('scan_verdicts', { scanner, verdict: verdict as string });
      else if (scan.reason !== 'disabled')
        this.#count('scanner_unavailable', { scanner, reason: scan.reason });
    }
    if (this.#scanTimes.length < MAX_SCAN_TIMES) this.#scanTimes.push(ms);
  }

  quarantined(reason: string): void {
    this.#count('quarantined', { reason });
  }

  #count(name: MetricName<'listener'>, dimensions: Record<string, string>): void {
    const counts = this.#dimensioned.get(name) ?? new Map<string, number>();
    const key = JSON.stringify(dimensions);
    counts.set(key, (counts.get(key) ?? 0) + 1);
    this.#dimensioned.set(name, counts);
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
    for (const [name, counts] of this.#dimensioned) {
      for (const [key, count] of counts) {
        for (const [dimension, value] of Object.entries(JSON.parse(key) as Record<string, string>))
          this.#metrics.addDimension(dimension, value);
        this.#metrics.addMetric(name, MetricUnit.Count, count);
        this.#metrics.publishStoredMetrics();
      }
    }
    this.#dimensioned.clear();
    for (const ms of this.#scanTimes) this.#metrics.addMetric('scan_ms', MetricUnit.Milliseconds, ms);
    this.#scanTimes = [];
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
