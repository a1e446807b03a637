import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { configReaders } from '../../core/aws/index.ts';
import {
  awsClientConfig,
  ENV,
  loadConfig,
  requireEnv,
  resourceNamesFromEnv,
  runtimeFromEnv,
} from '../../core/index.ts';
import { controlStoreFromEnv } from '../control-store.ts';
import { createParseHandler } from './create-handler.ts';

// Built once per Lambda instance and reused by every invocation.
const clientConfig = awsClientConfig();
const s3 = new S3Client(clientConfig);
const sqs = new SQSClient(clientConfig);
const { bucket, deliveryQueueUrl, inboundDlqUrl } = resourceNamesFromEnv([
  'bucket',
  'deliveryQueueUrl',
  'inboundDlqUrl',
]);
const config = await loadConfig(requireEnv(ENV.config), runtimeFromEnv(), configReaders(s3));
const parse = createParseHandler({
  s3,
  sqs,
  bucket,
  deliveryQueueUrl,
  inboundDlqUrl,
  config,
  controlStore: controlStoreFromEnv(clientConfig),
});

/** Lambda entry of the parse function (SQS `inbound` event source, partial batch responses on). */
export const handler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  parse(event, context);
