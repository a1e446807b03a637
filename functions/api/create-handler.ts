import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { s3Presigner } from '../../core/aws/index.ts';
import {
  type ControlStore,
  createApiHandler,
  type RetryPort,
  type TxtResolver,
} from '../../core/control/index.ts';
import {
  type Config,
  createLogger,
  createMetrics,
  type Logger,
  type Metrics,
  type Runtime,
} from '../../core/index.ts';
import { boundedResolver, systemResolver } from '../parse/dns.ts';
import { fromApiGatewayEvent, toApiGatewayResult } from './adapter.ts';
import { secretsManagerSigningSecretStore } from './secrets-manager-store.ts';

/** How long the link to a raw message in `GET /v1/messages/{id}` works. */
export const RAW_LINK_SECONDS = 15 * 60;

/** What the API function needs; the AWS clients are built once by the caller and passed in. */
export interface ApiFunctionDeps {
  /** The control plane's store (its table). */
  readonly store: ControlStore;
  readonly s3: S3Client;
  readonly secretsManager: SecretsManagerClient;
  /** The deployed config: its routes and domains are the read-only base, `hostname` the MX host. */
  readonly config: Config;
  readonly runtime: Runtime;
  /** Queues a message's deliveries again (`POST /v1/messages/{id}/retry`). */
  readonly retry: RetryPort;
  /** DNS for domain verification. @default the system's, with a deadline and a cache */
  readonly resolver?: TxtResolver;
  readonly now?: () => Date;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/**
 * The control plane API as an API Gateway HTTP API (payload format 2.0) handler: the store on the
 * table, API routes' signing secrets in Secrets Manager, 15-minute links to raw messages, and the
 * config's routes and domains as the read-only base.
 */
export function createApiFunctionHandler(
  deps: ApiFunctionDeps,
): (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2> {
  const logger = deps.logger ?? createLogger('api');
  const metrics = deps.metrics ?? createMetrics('api');
  const presign = s3Presigner(deps.s3, {
    expiresInSeconds: RAW_LINK_SECONDS,
    ...(deps.now ? { now: deps.now } : {}),
  });
  const api = createApiHandler({
    store: deps.store,
    config: deps.config,
    runtime: deps.runtime,
    mxHost: deps.config.hostname,
    resolver: deps.resolver ?? boundedResolver(systemResolver()),
    secrets: secretsManagerSigningSecretStore(deps.secretsManager, { logger }),
    retry: deps.retry,
    presign: (raw) => presign(raw.bucket, raw.key),
    ...(deps.now ? { now: deps.now } : {}),
    logger,
    metrics,
  });
  return async (event) => {
    try {
      return toApiGatewayResult(await api(fromApiGatewayEvent(event)));
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}
