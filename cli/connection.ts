import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type Command, Option } from 'commander';
import { configReaders } from '../core/aws/index.ts';
import type { MessageLogStore } from '../core/control/index.ts';
import { awsClientConfig, type Config, ENV, loadConfig, parseConfig, type Runtime } from '../core/index.ts';
import type { RunningRuntime } from '../dev/index.ts';
import { CliError, DEFAULT_DATA_DIR, LOCAL_CONFIG_FILE, UsageError } from './output.ts';

/** The emulator `npm start` runs. */
export const DEFAULT_LOCAL_ENDPOINT = 'http://127.0.0.1:4566';

/** The queues the CLI works on; the stack outputs name each (`InboundQueueName`, …). */
export type QueueRole = 'inbound' | 'inboundDlq' | 'delivery' | 'deliveryDlq';

export interface ConnectionOptions {
  aws?: boolean;
  stack?: string;
  dataDir?: string;
  endpoint?: string;
  bucket?: string;
  inboundQueue?: string;
  inboundDlq?: string;
  deliveryQueue?: string;
  deliveryDlq?: string;
  controlTable?: string;
}

const QUEUE_FLAGS: Record<
  QueueRole,
  {
    flag: string;
    key: 'inboundQueue' | 'inboundDlq' | 'deliveryQueue' | 'deliveryDlq';
    env: string;
    output: string;
  }
> = {
  inbound: {
    flag: '--inbound-queue',
    key: 'inboundQueue',
    env: ENV.inboundQueueUrl,
    output: 'InboundQueueName',
  },
  inboundDlq: {
    flag: '--inbound-dlq',
    key: 'inboundDlq',
    env: ENV.inboundDlqUrl,
    output: 'InboundDlqName',
  },
  delivery: {
    flag: '--delivery-queue',
    key: 'deliveryQueue',
    env: ENV.deliveryQueueUrl,
    output: 'DeliveryQueueName',
  },
  deliveryDlq: {
    flag: '--delivery-dlq',
    key: 'deliveryDlq',
    env: ENV.deliveryDlqUrl,
    output: 'DeliveryDlqName',
  },
};

/** Adds the flags that say where the bucket and queues are: the local emulator, or AWS. */
export function withConnectionOptions(command: Command): Command {
  command
    .option(
      '--data-dir <dir>',
      'data folder of the running `mailbridge dev`, whose config and ports are used (env MAILBRIDGE_DATA_DIR)',
      DEFAULT_DATA_DIR,
    )
    .option(
      '--endpoint <url>',
      `S3/SQS endpoint of the local emulator (default: the running runtime's, else env AWS_ENDPOINT_URL, else ${DEFAULT_LOCAL_ENDPOINT})`,
    )
    .option('--aws', 'use the deployed stack in AWS (SDK credentials) instead of the local emulator')
    .addOption(
      new Option('--stack <name>', "with --aws: read the resource names from this stack's outputs").env(
        'MAILBRIDGE_STACK',
      ),
    )
    .addOption(new Option('--bucket <name>', 'bucket (stack output BucketName)').env(ENV.bucket));
  for (const { flag, env, output } of Object.values(QUEUE_FLAGS)) {
    command.addOption(new Option(`${flag} <name-or-url>`, `queue (stack output ${output})`).env(env));
  }
  command.addOption(
    new Option(
      '--control-table <name>',
      'with --aws: the control plane table, where what the CLI re-queues is logged (stack output ControlTableName)',
    ).env(ENV.controlTable),
  );
  return command;
}

/** S3 and SQS clients and the resource names, local or in AWS. */
export interface Connection {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly local: boolean;
  /** The running `mailbridge dev` found in the data folder (local only). */
  readonly runtime: RunningRuntime | undefined;
  /** The emulator's endpoint; undefined in AWS. */
  readonly endpoint: string | undefined;
  bucket(): string;
  queueUrl(role: QueueRole): Promise<string>;
  /**
   * The control plane's message log: locally the running `mailbridge dev`'s store, in AWS the
   * control table with the SDK's credentials; undefined when there is none to write to (no
   * running runtime, no table named).
   */
  messageLog(): Promise<MessageLogStore | undefined>;
  close(): void;
}

/**
 * Connects to the local emulator (the running `mailbridge dev`'s, found through its data folder) or,
 * with `--aws`, to AWS with the SDK's credentials. Resources are named by `--stack`'s outputs, flags
 * or environment variables, locally defaulting to the names `npm start` creates; a queue given by
 * name (as the stack outputs give it) is looked up.
 */
export async function connect(options: ConnectionOptions): Promise<Connection> {
  const local = !options.aws;
  if (local && options.stack) throw new UsageError('--stack names a deployed stack: add --aws');
  // Loaded on use: the local runtime's modules are most of the CLI's start-up time.
  const { emulatorClients, findRunningRuntime, LOCAL_RESOURCE_NAMES } = await import('../dev/index.ts');
  const runtime = local ? await findRunningRuntime(options.dataDir ?? DEFAULT_DATA_DIR) : undefined;
  const named = options.stack
    ? { ...(await stackResourceNames(options.stack)), ...definedOnly(options) }
    : options;
  const localQueues: Record<QueueRole, string> = {
    inbound: LOCAL_RESOURCE_NAMES.inbound,
    inboundDlq: `${LOCAL_RESOURCE_NAMES.inbound}-dlq`,
    delivery: LOCAL_RESOURCE_NAMES.delivery,
    deliveryDlq: `${LOCAL_RESOURCE_NAMES.delivery}-dlq`,
  };
  const endpoint = local
    ? (
        options.endpoint ??
        runtime?.emulator ??
        process.env.AWS_ENDPOINT_URL ??
        DEFAULT_LOCAL_ENDPOINT
      ).replace(/\/$/, '')
    : undefined;
  const { s3, sqs } = endpoint
    ? emulatorClients(endpoint)
    : { s3: new S3Client(awsClientConfig()), sqs: new SQSClient(awsClientConfig()) };
  const urls = new Map<QueueRole, Promise<string>>();
  let dynamodb: DynamoDBClient | undefined;
  const lookUp = async (role: QueueRole): Promise<string> => {
    const { flag, key, env, output } = QUEUE_FLAGS[role];
    const given = named[key] ?? (local ? localQueues[role] : undefined);
    if (!given) {
      throw new UsageError(`--aws needs --stack, or ${flag} (or ${env}): the stack output ${output}`);
    }
    if (/^https?:\/\//.test(given)) return given;
    return (await sqs.send(new GetQueueUrlCommand({ QueueName: given }))).QueueUrl!;
  };
  return {
    s3,
    sqs,
    local,
    runtime,
    endpoint,
    bucket() {
      const bucket = named.bucket ?? (local ? LOCAL_RESOURCE_NAMES.bucket : undefined);
      if (!bucket)
        throw new UsageError(
          '--aws needs --stack, or --bucket (or MAILBRIDGE_BUCKET): the stack output BucketName',
        );
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
    async messageLog() {
      const table = local ? runtime?.control.table : named.controlTable;
      if (!table) return undefined;
      const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
      const { dynamoControlStore } = await import('../core/control/index.ts');
      const { localDynamoClient } = await import('../dev/dynamo.ts');
      dynamodb ??= runtime
        ? localDynamoClient(runtime.control.endpoint)
        : new DynamoDBClient(dynamoDbConfig());
      return dynamoControlStore(dynamodb, table);
    },
    close() {
      s3.destroy();
      sqs.destroy();
      dynamodb?.destroy();
    },
  };
}

/** The SDK's config for DynamoDB in AWS; `AWS_ENDPOINT_URL_DYNAMODB` wins over a shared endpoint, as in the functions. */
function dynamoDbConfig() {
  const config = awsClientConfig();
  const endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB;
  return endpoint ? { ...config, endpoint } : config;
}

type ResourceOptions = Pick<
  ConnectionOptions,
  'bucket' | 'controlTable' | (typeof QUEUE_FLAGS)[QueueRole]['key']
>;

/** The resource flags that were given; they win over the stack's outputs. */
function definedOnly(options: ConnectionOptions): ResourceOptions {
  const keys = ['bucket', 'controlTable', ...Object.values(QUEUE_FLAGS).map((queue) => queue.key)] as const;
  return Object.fromEntries(keys.flatMap((key) => (options[key] ? [[key, options[key]]] : [])));
}

/**
 * The bucket and queue names of a deployed stack, from its outputs (CloudFormation DescribeStacks;
 * `cdk deploy` prints the same outputs).
 */
async function stackResourceNames(stack: string): Promise<ResourceOptions> {
  const { CloudFormationClient, DescribeStacksCommand } = await import('@aws-sdk/client-cloudformation');
  // The SDK's own endpoint resolution (AWS_ENDPOINT_URL_CLOUDFORMATION among others), not the emulator's.
  const { region, credentials } = awsClientConfig();
  const cloudFormation = new CloudFormationClient({ region, ...(credentials ? { credentials } : {}) });
  try {
    const { Stacks = [] } = await cloudFormation
      .send(new DescribeStacksCommand({ StackName: stack }))
      .catch((error: Error) => {
        throw new CliError(`cannot read the outputs of stack ${stack}: ${error.message}`);
      });
    const outputs = new Map(
      (Stacks[0]?.Outputs ?? []).map((output) => [output.OutputKey, output.OutputValue]),
    );
    const wanted: [keyof ResourceOptions, string][] = [
      ['bucket', 'BucketName'],
      ...Object.values(QUEUE_FLAGS).map(({ key, output }): [keyof ResourceOptions, string] => [key, output]),
    ];
    const missing = wanted.filter(([, output]) => !outputs.get(output)).map(([, output]) => output);
    if (missing.length > 0) {
      throw new CliError(`stack ${stack} has no output ${missing.join(', ')}: is it a mailbridge stack?`);
    }
    const names = Object.fromEntries(wanted.map(([key, output]) => [key, outputs.get(output)]));
    // Optional: a stack deployed before the control plane has no table, and the CLI logs nothing.
    const controlTable = outputs.get('ControlTableName');
    return { ...names, ...(controlTable ? { controlTable } : {}) } as ResourceOptions;
  } finally {
    cloudFormation.destroy();
  }
}

/**
 * The config a command works with: the file given; else, locally, the one in effect in the running
 * `mailbridge dev` (it may have been started with `--config`), else the default local config.
 * `source` says which, for messages.
 */
export async function configInUse(
  connection: Connection,
  given: string | undefined,
  runtime: Runtime,
): Promise<{ config: Config; source: string }> {
  if (given) {
    return {
      config: await loadConfig(given, runtime, configReaders(connection.s3)),
      source: given,
    };
  }
  if (connection.runtime) {
    const { configFile, pid } = connection.runtime;
    const source = `${configFile} (as run by mailbridge dev, pid ${pid})`;
    return { config: parseConfig(connection.runtime.config, { source, runtime }), source };
  }
  if (!connection.local) {
    throw new UsageError(
      '--aws needs --config (or MAILBRIDGE_CONFIG): the deployed config file or s3:// URL',
    );
  }
  return { config: await loadConfig(LOCAL_CONFIG_FILE, runtime, configReaders()), source: LOCAL_CONFIG_FILE };
}
