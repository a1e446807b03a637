export type { Presign } from './aws.ts';
export {
  s3EndpointHealthStore,
  s3Presigner,
  s3TextReader,
  secretsManagerReader,
} from './aws.ts';
export { BareLfScanner } from './bare-lf.ts';
export type {
  Config,
  ConfigInput,
  ListenerConfig,
  Route,
  Runtime,
  S3TextReader,
  SecretRef,
} from './config.ts';
export {
  ConfigSchema,
  configJsonSchema,
  DEFAULT_RETRY_SCHEDULE_SECONDS,
  loadConfig,
  parseConfig,
  parseConfigText,
  SecretRefSchema,
} from './config.ts';
export type {
  AttemptResult,
  DeadLetterReason,
  DeliveryDecision,
  DeliveryOutcome,
  FailedOutcome,
  WebhookRequest,
  WebhookSender,
} from './delivery.ts';
export { classifyAttempt, decideNext, MAX_RETRY_DELAY_SECONDS, parseRetryAfter } from './delivery.ts';
export { parseDurationSeconds } from './duration.ts';
export type { EndpointHealth, EndpointHealthStore, StoredEndpointHealth } from './endpoint-health.ts';
export {
  DEFAULT_DISABLE_AFTER_SECONDS,
  ENDPOINT_HEALTH_PREFIX,
  endpointHealthKey,
  HEALTHY_ENDPOINT,
  nextEndpointHealth,
} from './endpoint-health.ts';
export type { ResourceNames } from './env.ts';
export { awsClientConfig, requireEnv, resourceNamesFromEnv, runtimeFromEnv } from './env.ts';
export {
  AuthFailedError,
  BareLineFeedError,
  ConfigError,
  EnvelopeTimeoutError,
  InvalidRecordError,
  MailbridgeError,
  MessageTooLargeError,
  RelayDeniedError,
  SessionLimitError,
  SmtpError,
  SpoolFullError,
  TemporaryFailureError,
  TlsRequiredError,
  TooManyConnectionsError,
  TooManyRecipientsError,
  UnknownRecipientError,
} from './errors.ts';
export type { DeliveryJob, InboundEvent } from './events.ts';
export { DeliveryJobSchema, InboundEventSchema, parseRecordBody } from './events.ts';
export { DEDUPE_PREFIX, newMessageId, rawObjectKey, webhookId } from './ids.ts';
export type { Logger, Metrics } from './observability.ts';
export { createLogger, createMetrics, METRICS_NAMESPACE, MetricUnit } from './observability.ts';
export type {
  WebhookAddress,
  WebhookAttachment,
  WebhookAuth,
  WebhookMessage,
  WebhookPayload,
} from './payload.ts';
export { WEBHOOK_PAYLOAD_SCHEMA_PATH, WebhookPayloadSchema, webhookPayloadJsonSchema } from './payload.ts';
export { QUEUE_SETTINGS } from './queues.ts';
export type { ParsedAddress, RecipientRoute } from './routes.ts';
export { parseAddress, Router } from './routes.ts';
export type { SecretStringReader } from './secrets.ts';
export { resolveSecret } from './secrets.ts';
export type { WebhookSignatureHeaders } from './signing.ts';
export { InvalidSigningSecretError, signWebhook } from './signing.ts';
