import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type ControlStore, dynamoControlStore } from '../core/control/index.ts';
import { type awsClientConfig, ConfigError, ENV, requireEnv } from '../core/index.ts';

/**
 * The control plane's store on the table the deployment names (`MAILBRIDGE_CONTROL_TABLE`), with
 * the message log's retention (`MAILBRIDGE_CONTROL_RETENTION_DAYS`); built once per container.
 * `AWS_ENDPOINT_URL_DYNAMODB` (the SDK's per-service endpoint variable) points it at a local store
 * when the other services go to the S3/SQS emulator.
 */
export function controlStoreFromEnv(
  clientConfig: ReturnType<typeof awsClientConfig>,
  env: NodeJS.ProcessEnv = process.env,
): ControlStore {
  const retentionDays = Number(requireEnv(ENV.controlRetentionDays, env));
  if (!Number.isInteger(retentionDays) || retentionDays < 1) {
    throw new ConfigError('environment', [`${ENV.controlRetentionDays}: whole days, at least 1`]);
  }
  const endpoint = env.AWS_ENDPOINT_URL_DYNAMODB;
  const client = new DynamoDBClient(endpoint ? { ...clientConfig, endpoint } : clientConfig);
  return dynamoControlStore(client, requireEnv(ENV.controlTable, env), {
    retentionDays,
  });
}
