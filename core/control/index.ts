export type { ApiDeps, ApiRequest, ApiResponse, Operation, RetryPort } from './api.ts';
export { createApiHandler, OPERATIONS } from './api.ts';
export type { ApiClient, ApiClientOptions, ApiPage, MessageListQuery } from './client.ts';
export { ApiClientError, ApiUnreachableError, apiClient, describeTimelineEvent } from './client.ts';
export type { TxtResolver } from './domains.ts';
export {
  DnsUnavailableError,
  DOMAIN_CLAIM_DAYS,
  domainRecords,
  hasDomainProof,
  newDomainClaim,
} from './domains.ts';
export type { DynamoControlStoreOptions } from './dynamodb-store.ts';
export {
  ACTIVITY_PARTITION_PREFIX,
  CONTROL_TABLE_INDEXES,
  CONTROL_TABLE_KEYS,
  controlTableDefinition,
  DEDUPE_PARTITION_PREFIX,
  dynamoControlStore,
  ensureControlTable,
} from './dynamodb-store.ts';
export { ApiError, DomainNotVerifiedError, StoreConflictError, StoreRejectedError } from './errors.ts';
export { findApiKey, isApiKeyShaped, newApiKey } from './keys.ts';
export type { MessageLogWriterOptions, MessageLogWriterStats } from './log-writer.ts';
export { MessageLogWriter } from './log-writer.ts';
export { detail, matchesQuery, messageRoutes, senderKey, subjectWords, summarize } from './message-view.ts';
export { OPENAPI_DOCUMENT_PATH, openApiDocument } from './openapi.ts';
export type { RcptIndexOptions } from './rcpt-index.ts';
export { RcptIndex } from './rcpt-index.ts';
export type { SigningSecretStore } from './route-secrets.ts';
export {
  localSigningSecretStore,
  makeSigningSecret,
  newSigningSecretValue,
  pipelineRoute,
  rotateSecrets,
} from './route-secrets.ts';
export type { RouteSyncOptions } from './route-sync.ts';
export { ROUTE_SYNC_DEFAULTS, RouteSync } from './route-sync.ts';
export * from './schemas.ts';
export { awaitsFollowUp, deriveStatus } from './status.ts';
export type * from './store.ts';
