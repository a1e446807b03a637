import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { secretsManagerReader } from '../../core/aws/index.ts';
import { routeSecretsResolver } from '../../core/index.ts';
import { builtOnFirstUse, functionContainer } from '../container.ts';
import { createDeliverHandler } from './deliver.ts';

const { s3, sqs, names, controlStore, runtime, clientConfig, loadConfig } = functionContainer([
  'bucket',
  'deliveryQueueUrl',
  'deliveryDlqUrl',
]);
const secrets = routeSecretsResolver({
  secretsManager: secretsManagerReader(new SecretsManagerClient(clientConfig)),
});

/** The deliver Lambda (SQS `delivery` event source, partial batch responses on). */
export const handler = builtOnFirstUse(async () =>
  createDeliverHandler({ s3, sqs, ...names, config: await loadConfig(), controlStore, secrets, runtime }),
);
