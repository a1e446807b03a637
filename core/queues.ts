/**
 * Queue settings that the CDK app and the local runtime must agree on.
 *
 * Deliveries are retried on the route's schedule by the deliver function itself, which moves an
 * exhausted or permanently failed job to the DLQ with its reason; the SQS redrive on `delivery` is
 * only a safety net, so its receive count sits above the longest schedule a route may have (50).
 */
export const QUEUE_SETTINGS = {
  inbound: { maxReceiveCount: 5, visibilityTimeoutSeconds: 6 * 60, retentionDays: 14 },
  delivery: { maxReceiveCount: 60, visibilityTimeoutSeconds: 6 * 60, retentionDays: 14 },
  /** Functions' timeouts; queue visibility is at least 6 × these (Lambda's SQS guidance). */
  functionTimeoutSeconds: { parse: 60, deliver: 60 },
} as const;
