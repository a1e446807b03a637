import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { QUEUE_SETTINGS, type ResourceNames } from '../core/index.ts';

/** Everything the local pipeline needs from the emulator, plus the DLQ of `inbound`. */
export interface LocalResources extends ResourceNames {
  readonly inboundDlqUrl: string;
}

/** Fixed local names, so scripts and tools can rely on them. */
export const LOCAL_RESOURCE_NAMES = {
  bucket: 'mailbridge-local',
  inbound: 'mailbridge-inbound',
  delivery: 'mailbridge-delivery',
} as const;

async function createQueueWithDlq(
  sqs: SQSClient,
  name: string,
  settings: { maxReceiveCount: number; visibilityTimeoutSeconds: number; retentionDays: number },
): Promise<{ queueUrl: string; dlqUrl: string }> {
  const retention = String(settings.retentionDays * 86400);
  const dlq = await sqs.send(
    new CreateQueueCommand({ QueueName: `${name}-dlq`, Attributes: { MessageRetentionPeriod: retention } }),
  );
  const dlqUrl = dlq.QueueUrl!;
  const attributes = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }),
  );
  const queue = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(settings.visibilityTimeoutSeconds),
        MessageRetentionPeriod: retention,
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: attributes.Attributes!.QueueArn,
          maxReceiveCount: settings.maxReceiveCount,
        }),
      },
    }),
  );
  return { queueUrl: queue.QueueUrl!, dlqUrl };
}

/** Creates (idempotently) the bucket, the two queues and their DLQs with redrive policies. */
export async function provisionLocalResources(
  clients: { s3: S3Client; sqs: SQSClient },
  names: { bucket: string; inbound: string; delivery: string } = LOCAL_RESOURCE_NAMES,
): Promise<LocalResources> {
  await clients.s3
    .send(new CreateBucketCommand({ Bucket: names.bucket }))
    .catch((error: { name?: string }) => {
      if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists') throw error;
    });
  const inbound = await createQueueWithDlq(clients.sqs, names.inbound, QUEUE_SETTINGS.inbound);
  const delivery = await createQueueWithDlq(clients.sqs, names.delivery, QUEUE_SETTINGS.delivery);
  return {
    bucket: names.bucket,
    inboundQueueUrl: inbound.queueUrl,
    inboundDlqUrl: inbound.dlqUrl,
    deliveryQueueUrl: delivery.queueUrl,
    deliveryDlqUrl: delivery.dlqUrl,
  };
}

/** SDK clients pointed at the emulator, signing with `accessKeyId` (a test proxy tells roles apart by it). */
export function emulatorClients(endpoint: string, accessKeyId = 'local'): { s3: S3Client; sqs: SQSClient } {
  const common = {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId, secretAccessKey: 'local' },
  };
  return { s3: new S3Client({ ...common, forcePathStyle: true }), sqs: new SQSClient(common) };
}
