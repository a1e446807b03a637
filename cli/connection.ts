import { S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type Command, Option } from 'commander';
import { awsClientConfig } from '../core/index.ts';
import { UsageError } from './output.ts';

/** The emulator `npm start` runs. */
export const DEFAULT_LOCAL_ENDPOINT = 'http://127.0.0.1:4566';

/** The queues the CLI works on; the stack outputs name each (`InboundQueueName`, …). */
export type QueueRole = 'inbound' | 'inboundDlq' | 'delivery' | 'deliveryDlq';

export interface ConnectionOptions {
  aws?: boolean;
  endpoint?: string;
  bucket?: string;
  inboundQueue?: string;
  inboundDlq?: string;
  deliveryQueue?: string;
  deliveryDlq?: string;
}

const QUEUE_FLAGS: Record<
  QueueRole,
  { flag: string; key: Exclude<keyof ConnectionOptions, 'aws'>; env: string; output: string }
> = {
  inbound: {
    flag: '--inbound-queue',
    key: 'inboundQueue',
    env: 'MAILBRIDGE_INBOUND_QUEUE_URL',
    output: 'InboundQueueName',
  },
  inboundDlq: {
    flag: '--inbound-dlq',
    key: 'inboundDlq',
    env: 'MAILBRIDGE_INBOUND_DLQ_URL',
    output: 'InboundDlqName',
  },
  delivery: {
    flag: '--delivery-queue',
    key: 'deliveryQueue',
    env: 'MAILBRIDGE_DELIVERY_QUEUE_URL',
    output: 'DeliveryQueueName',
  },
  deliveryDlq: {
    flag: '--delivery-dlq',
    key: 'deliveryDlq',
    env: 'MAILBRIDGE_DELIVERY_DLQ_URL',
    output: 'DeliveryDlqName',
  },
};

/** Adds the flags that say where the bucket and queues are: the local emulator, or AWS. */
export function withConnectionOptions(command: Command): Command {
  command
    .option(
      '--endpoint <url>',
      `S3/SQS endpoint of the local emulator (env AWS_ENDPOINT_URL, default ${DEFAULT_LOCAL_ENDPOINT})`,
    )
    .option('--aws', 'use the deployed stack in AWS (SDK credentials) instead of the local emulator')
    .addOption(new Option('--bucket <name>', 'bucket (stack output BucketName)').env('MAILBRIDGE_BUCKET'));
  for (const { flag, env, output } of Object.values(QUEUE_FLAGS)) {
    command.addOption(new Option(`${flag} <name-or-url>`, `queue (stack output ${output})`).env(env));
  }
  return command;
}

/** S3 and SQS clients and the resource names, local or in AWS. */
export interface Connection {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly local: boolean;
  /** The emulator's endpoint; undefined in AWS. */
  readonly endpoint: string | undefined;
  bucket(): string;
  queueUrl(role: QueueRole): Promise<string>;
  close(): void;
}

/**
 * Connects to the local emulator or, with `--aws`, to AWS with the SDK's credentials. Resources are
 * named by flags or environment variables, locally defaulting to the names `npm start` creates; a
 * queue given by name (as the stack outputs give it) is looked up.
 */
export async function connect(options: ConnectionOptions): Promise<Connection> {
  const local = !options.aws;
  // Loaded on use: the local runtime's modules are most of the CLI's start-up time.
  const { emulatorClients, LOCAL_RESOURCE_NAMES } = await import('../dev/index.ts');
  const localQueues: Record<QueueRole, string> = {
    inbound: LOCAL_RESOURCE_NAMES.inbound,
    inboundDlq: `${LOCAL_RESOURCE_NAMES.inbound}-dlq`,
    delivery: LOCAL_RESOURCE_NAMES.delivery,
    deliveryDlq: `${LOCAL_RESOURCE_NAMES.delivery}-dlq`,
  };
  const endpoint = local
    ? (options.endpoint ?? process.env.AWS_ENDPOINT_URL ?? DEFAULT_LOCAL_ENDPOINT).replace(/\/$/, '')
    : undefined;
  const { s3, sqs } = endpoint
    ? emulatorClients(endpoint)
    : { s3: new S3Client(awsClientConfig()), sqs: new SQSClient(awsClientConfig()) };
  const urls = new Map<QueueRole, Promise<string>>();
  const lookUp = async (role: QueueRole): Promise<string> => {
    const { flag, key, env, output } = QUEUE_FLAGS[role];
    const given = options[key] ?? (local ? localQueues[role] : undefined);
    if (!given) {
      throw new UsageError(`--aws needs ${flag} (or ${env}): the stack output ${output}`);
    }
    if (/^https?:\/\//.test(given)) return given;
    return (await sqs.send(new GetQueueUrlCommand({ QueueName: given }))).QueueUrl!;
  };
  return {
    s3,
    sqs,
    local,
    endpoint,
    bucket() {
      const bucket = options.bucket ?? (local ? LOCAL_RESOURCE_NAMES.bucket : undefined);
      if (!bucket)
        throw new UsageError('--aws needs --bucket (or MAILBRIDGE_BUCKET): the stack output BucketName');
      return bucket;
    },
    queueUrl(role) {
      let url = urls.get(role);
      if (!url) {
        url = lookUp(role);
        urls.set(role, url);
      }
      return url;
    },
    close() {
      s3.destroy();
      sqs.destroy();
    },
  };
}
