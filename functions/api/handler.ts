import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { ApiError, type RetryPort } from '../../core/control/index.ts';
import {
  awsClientConfig,
  ConfigError,
  ENV,
  loadConfig,
  requireEnv,
  runtimeFromEnv,
  s3TextReader,
} from '../../core/index.ts';
import { createApiFunctionHandler } from './create-handler.ts';

/**
 * `POST /v1/messages/{id}/retry` needs the pipeline's retry port (it rebuilds a message's delivery
 * jobs from what parse stored); until it is wired in, the request is answered 501 with a clear
 * message and nothing is queued.
 */
const retryNotAvailable: RetryPort = {
  retry: async () => {
    throw new ApiError(
      501,
      'not_implemented',
      'retry through the API is not available in this deployment yet; redrive the delivery DLQ or replay the message with the CLI',
    );
  },
};

// Built once per container at init, reused by every invocation.
const clientConfig = awsClientConfig();
const s3 = new S3Client(clientConfig);
const runtime = runtimeFromEnv();
const config = await loadConfig(requireEnv(ENV.config), runtime, { s3Text: s3TextReader(s3) });
const retentionDays = Number(requireEnv(ENV.controlRetentionDays));
if (!Number.isInteger(retentionDays) || retentionDays < 1) {
  throw new ConfigError('environment', [`${ENV.controlRetentionDays}: whole days, at least 1`]);
}
const api = createApiFunctionHandler({
  dynamodb: new DynamoDBClient(clientConfig),
  s3,
  secretsManager: new SecretsManagerClient(clientConfig),
  tableName: requireEnv(ENV.controlTable),
  retentionDays,
  config,
  runtime,
  retry: retryNotAvailable,
});

/** Lambda entry of the API function (API Gateway HTTP API, payload format 2.0). */
export const handler = (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> =>
  api(event);
