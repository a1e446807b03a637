import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

/** CloudWatch namespace of every mailbridge metric. */
export const METRICS_NAMESPACE = 'mailbridge';

/**
 * JSON-lines logger for one part of mailbridge. Log lines about a message carry `messageId`
 * (add it with `logger.appendKeys` or a child logger). `POWERTOOLS_LOG_LEVEL` sets the level.
 */
export function createLogger(serviceName: string): Logger {
  return new Logger({ serviceName });
}

/** EMF metrics in the mailbridge namespace; flushed by `publishStoredMetrics()`. */
export function createMetrics(serviceName: string): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName });
}

export type { Logger } from '@aws-lambda-powertools/logger';
export type { Metrics } from '@aws-lambda-powertools/metrics';
export { MetricUnit } from '@aws-lambda-powertools/metrics';
