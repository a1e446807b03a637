import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { awsClientConfig, Config } from '../core/index.ts';

/**
 * The listener's S3 and SQS clients. Every request has a connect timeout and an overall timeout
 * (`limits.storageConnectTimeout`, `limits.storageRequestTimeout`): without them a hung call would
 * hold the sender until its own timeout, 10 minutes after the final dot (RFC 5321 §4.5.3.2.6),
 * and hold the message past a drain on SIGTERM. The SDK retries a timed-out call (3 tries in all),
 * then the message is answered `451 4.3.0` and the sender retries later. The control plane's
 * DynamoDB client has the same bounds: a hung route poll would otherwise hold a drain on SIGTERM.
 */
export function storageClients(
  limits: Config['limits'],
  settings: ReturnType<typeof awsClientConfig>,
): { s3: S3Client; sqs: SQSClient; dynamodb: DynamoDBClient } {
  const requestHandler = {
    connectionTimeout: limits.storageConnectTimeout * 1000,
    requestTimeout: limits.storageRequestTimeout * 1000,
    // Without it the SDK only logs a warning when requestTimeout passes.
    throwOnRequestTimeout: true,
  };
  const { forcePathStyle, ...common } = settings;
  return {
    s3: new S3Client({ ...common, forcePathStyle, requestHandler }),
    sqs: new SQSClient({ ...common, requestHandler }),
    dynamodb: new DynamoDBClient({ ...common, requestHandler }),
  };
}
