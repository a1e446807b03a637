export { BareLfScanner } from './bare-lf.ts';
export {
  attachmentKey,
  BUCKET_PREFIXES,
  CONFIG_OBJECT_KEY,
  endpointHealthKey,
  isMessageObject,
  messagePayloadsPrefix,
  payloadKey,
  READINESS_PROBE_KEY,
  rawObjectKey,
} from './bucket-keys.ts';
export type {
  Config,
  ConfigInput,
  ConfigReaders,
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
export { formatConfigPath, parseDocumentText } from './config-text.ts';
export type {
  AttemptResult,
  DeliveryDecision,
  DeliveryEnd,
  DeliveryFacts,
  DeliveryOutcome,
  DeliveryProgress,
  DeliveryStep,
  FailedOutcome,
  WebhookRequest,
  WebhookSender,
} from './delivery.ts';
export {
  classifyAttempt,
  decideDelivery,
  decideNext,
  INVOCATION_MARGIN_MS,
  longestRetrySeconds,
  MAX_RETRY_DELAY_SECONDS,
  MAX_ROUTE_TIMEOUT_SECONDS,
  parseRetryAfter,
  tryTimeoutMs,
} from './delivery.ts';
export type { DnsResolver } from './dns-resolver.ts';
export { parseDurationSeconds } from './duration.ts';
export type { EndpointHealth, EndpointHealthStore, StoredEndpointHealth } from './endpoint-health.ts';
export {
  DEFAULT_DISABLE_AFTER_SECONDS,
  HEALTHY_ENDPOINT,
  nextEndpointHealth,
} from './endpoint-health.ts';
export type { ControlPlaneSettings, ResourceNames } from './env.ts';
export {
  awsClientConfig,
  controlPlaneSettings,
  ENV,
  requireEnv,
  resourceNamesFromEnv,
  runtimeFromEnv,
} from './env.ts';
export {
  AuthFailedError,
  AuthRequiredError,
  AuthUnavailableError,
  BareLineFeedError,
  ConfigError,
  EnvelopeTimeoutError,
  InvalidRecordError,
  MailbridgeError,
  MessageTooLargeError,
  QueueSendError,
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
export type {
  DeadLetterEntry,
  DeadLetterReason,
  DeliveryJob,
  InboundDeadLetterEntry,
  InboundEvent,
  JobPayload,
} from './events.ts';
export {
  billedSqsRequests,
  DeadLetterEntrySchema,
  DeadLetterReasonSchema,
  DeliveryDlqBodySchema,
  DeliveryJobSchema,
  INLINE_JOB_BYTES,
  InboundDeadLetterEntrySchema,
  InboundDlqBodySchema,
  InboundEventSchema,
  parseQueueBody,
  parseRecordBody,
  SQS_LIMITS,
  sqsJson,
} from './events.ts';
export { newMessageId, webhookId } from './ids.ts';
export type { ControlMetricName, MetricName, MetricService } from './metric-names.ts';
export {
  CONTROL_METRIC_SERVICES,
  CONTROL_METRICS,
  METRIC_SERVICES,
  METRICS,
} from './metric-names.ts';
export type { Logger, Metrics } from './observability.ts';
export { createLogger, createMetrics, METRICS_NAMESPACE, MetricUnit } from './observability.ts';
export type {
  WebhookAddress,
  WebhookAttachment,
  WebhookAuth,
  WebhookBounce,
  WebhookFlags,
  WebhookForwarded,
  WebhookMessage,
  WebhookPayload,
  WebhookRecipientDetail,
  WebhookUnpacked,
} from './payload.ts';
export {
  conformPayload,
  WEBHOOK_PAYLOAD_SCHEMA_PATH,
  WebhookPayloadSchema,
  webhookPayloadJsonSchema,
} from './payload.ts';
export { QUEUE_SETTINGS } from './queues.ts';
export type {
  ReplyTokenFailure,
  ReplyTokenInput,
  ReplyTokenResult,
  VerifyReplyTokenOptions,
} from './reply-token.ts';
export {
  createReplyAddress,
  createReplyToken,
  MAX_REPLY_REFERENCE_BYTES,
  verifyReplyToken,
} from './reply-token.ts';
export type { ReadMessageFacts, RouteGroup, StoredFile } from './route-payload.ts';
export { inlinePayload, messageFingerprint, routeJobs, routePayload } from './route-payload.ts';
export type { ParsedAddress, RecipientRoute } from './routes.ts';
export { parseAddress, Router } from './routes.ts';
export type { SecretStringReader } from './secrets.ts';
export { resolveSecret, routeSecretsResolver } from './secrets.ts';
export type {
  BatchAnswer,
  BatchCall,
  BatchEntry,
  BatchEntryFailure,
  SendBatchOptions,
  UnsentItem,
} from './send-batch.ts';
export { BatchSendError, sendBatch } from './send-batch.ts';
export type { WebhookSignatureHeaders } from './signing.ts';
export { InvalidSigningSecretError, signWebhook } from './signing.ts';
export type { ObjectRef } from './stored-payload.ts';
export {
  capBodies,
  capJsonString,
  fillLinks,
  fitPayload,
  jsonByteLength,
  jsonChunks,
  linkPlaceholder,
  PAYLOAD_LIMITS,
  storedPayloadProblem,
} from './stored-payload.ts';
export { StreamMeter } from './stream-meter.ts';
