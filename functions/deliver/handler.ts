import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { configReaders, secretsManagerReader } from '../../core/aws/index.ts';
import {
  awsClientConfig,
  ENV,
  loadConfig,
  type Route,
  requireEnv,
  resolveSecret,
  resourceNamesFromEnv,
  runtimeFromEnv,
} from '../../core/index.ts';
import { controlStoreFromEnv } from '../control-store.ts';
import { createDeliverHandler } from './deliver.ts';

// Built once per container at init, reused by every invocation.
const runtime = runtimeFromEnv();
const names = resourceNamesFromEnv(['bucket', 'deliveryQueueUrl', 'deliveryDlqUrl']);
const clientConfig = awsClientConfig();
const s3 = new S3Client(clientConfig);
const sqs = new SQSClient(clientConfig);
const secretsManager = new SecretsManagerClient(clientConfig);
const controlStore = controlStoreFromEnv(clientConfig);
/** By the route's secret references, not its id: an API route's rotation changes them, and signs at once. */
const secretsByRefs = new Map<string, Promise<string[]>>();

/** A failed load is forgotten, so the next invocation tries again instead of failing for the container's life. */
function cached<T>(load: () => Promise<T>, forget: () => void): Promise<T> {
  const loading = load();
  loading.catch(forget);
  return loading;
}

function routeSecrets(route: Route): Promise<string[]> {
  const refs = JSON.stringify(route.secret);
  let secrets = secretsByRefs.get(refs);
  if (!secrets) {
    const readers = { secretsManager: secretsManagerReader(secretsManager) };
    secrets = cached(
      () =>
        Promise.all(
          route.secret.map((ref, index) =>
            resolveSecret(ref, `routes[${route.id}].secret[${index}]`, readers),
          ),
        ),
      () => secretsByRefs.delete(refs),
    );
    secretsByRefs.set(refs, secrets);
  }
  return secrets;
}

let deliver: Promise<(event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>> | undefined;

/** The deliver Lambda: config from `MAILBRIDGE_CONFIG` (a file or s3://), read once per container. */
export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  deliver ??= cached(
    async () => {
      const config = await loadConfig(requireEnv(ENV.config), runtime, configReaders(s3));
      return createDeliverHandler({
        s3,
        sqs,
        ...names,
        config,
        controlStore,
        secrets: routeSecrets,
        runtime,
      });
    },
    () => {
      deliver = undefined;
    },
  );
  return (await deliver)(event, context);
};
