import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import {
  type Emulator,
  emulatorClients,
  type LocalResources,
  provisionLocalResources,
  startEmulator,
} from '../dev/index.ts';

/** A fresh in-memory emulator on 127.0.0.1 with the pipeline's bucket and queues. */
export interface TestEmulator {
  readonly emulator: Emulator;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly resources: LocalResources;
  /** Environment variables that point a part of mailbridge at this emulator. */
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

export async function startTestEmulator(options: { dataDir?: string } = {}): Promise<TestEmulator> {
  const emulator = await startEmulator(options);
  const { s3, sqs } = emulatorClients(emulator.endpoint);
  const resources = await provisionLocalResources({ s3, sqs });
  const env = {
    AWS_ENDPOINT_URL: emulator.endpoint,
    AWS_REGION: 'us-east-1',
    MAILBRIDGE_RUNTIME: 'local',
    MAILBRIDGE_BUCKET: resources.bucket,
    MAILBRIDGE_INBOUND_QUEUE_URL: resources.inboundQueueUrl,
    MAILBRIDGE_DELIVERY_QUEUE_URL: resources.deliveryQueueUrl,
    MAILBRIDGE_DELIVERY_DLQ_URL: resources.deliveryDlqUrl,
    MAILBRIDGE_INBOUND_DLQ_URL: resources.inboundDlqUrl,
  };
  return {
    emulator,
    s3,
    sqs,
    resources,
    env,
    close: async () => {
      s3.destroy();
      sqs.destroy();
      await emulator.close();
    },
  };
}
