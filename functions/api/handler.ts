import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { configReaders } from '../../core/aws/index.ts';
import { awsClientConfig, ENV, loadConfig, requireEnv, runtimeFromEnv } from '../../core/index.ts';
import { controlStoreFromEnv } from '../control-store.ts';
import { inboundRetryPort } from '../retry.ts';
import { createApiFunctionHandler } from './create-handler.ts';

// Built once per container at init, reused by every invocation.
const clientConfig = awsClientConfig();
const s3 = new S3Client(clientConfig);
const runtime = runtimeFromEnv();
const config = await loadConfig(requireEnv(ENV.config), runtime, configReaders(s3));
const store = controlStoreFromEnv(clientConfig);
const api = createApiFunctionHandler({
  store,
  s3,
  secretsManager: new SecretsManagerClient(clientConfig),
  config,
  runtime,
  retry: inboundRetryPort({
    store,
    s3,
    sqs: new SQSClient(clientConfig),
    inboundQueueUrl: requireEnv(ENV.inboundQueueUrl),
  }),
});

/** Lambda entry of the API function (API Gateway HTTP API, payload format 2.0). */
export const handler = (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> =>
  api(event);
