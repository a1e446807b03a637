import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { configReaders } from '../core/aws/index.ts';
import type { ControlStore } from '../core/control/index.ts';
import {
  awsClientConfig,
  type Config,
  ENV,
  loadConfig,
  type ResourceNames,
  type Runtime,
  requireEnv,
  resourceNamesFromEnv,
  runtimeFromEnv,
} from '../core/index.ts';
import { controlStoreFromEnv } from './control-store.ts';

/** What an SQS-triggered function builds once per Lambda container, from its environment. */
export interface FunctionContainer<K extends keyof ResourceNames> {
  readonly runtime: Runtime;
  readonly clientConfig: ReturnType<typeof awsClientConfig>;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly names: Pick<ResourceNames, K>;
  readonly controlStore: ControlStore;
  /** Reads `MAILBRIDGE_CONFIG` (a file or s3://). */
  loadConfig(): Promise<Config>;
}

/**
 * The parse and deliver functions' start: runtime, clients, resource names and control store from
 * the environment at init (a missing variable fails the container at once, naming it).
 */
export function functionContainer<K extends keyof ResourceNames>(
  resources: readonly K[],
): FunctionContainer<K> {
  const runtime = runtimeFromEnv();
  const names = resourceNamesFromEnv(resources);
  const clientConfig = awsClientConfig();
  const s3 = new S3Client(clientConfig);
  return {
    runtime,
    clientConfig,
    s3,
    sqs: new SQSClient(clientConfig),
    names,
    controlStore: controlStoreFromEnv(clientConfig),
    loadConfig: () => loadConfig(requireEnv(ENV.config), runtime, configReaders(s3)),
  };
}

type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/**
 * A Lambda entry whose handler is built at the first invocation (the config read, at most once at
 * a time) and kept for the container's life. A failed build is forgotten, so the next invocation
 * tries again instead of failing for the container's life; the batch fails and its records return.
 */
export function builtOnFirstUse(build: () => Promise<SqsHandler>): SqsHandler {
  let built: Promise<SqsHandler> | undefined;
  return async (event, context) => {
    if (!built) {
      const building = build();
      built = building;
      building.catch(() => {
        if (built === building) built = undefined;
      });
    }
    return (await built)(event, context);
  };
}
