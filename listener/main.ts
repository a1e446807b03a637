/**
 * The listener container's entry point (`node listener/main.ts`). Reads `MAILBRIDGE_CONFIG` (a
 * file or `s3://bucket/key`), `MAILBRIDGE_RUNTIME`, `MAILBRIDGE_BUCKET`,
 * `MAILBRIDGE_INBOUND_QUEUE_URL`, `MAILBRIDGE_CONTROL_TABLE` (the control plane: API routes and
 * domains at RCPT, the message log; without it the config's routes only, nothing logged) and
 * optionally `AWS_ENDPOINT_URL`; logs one JSON line per bound port; on SIGTERM or SIGINT drains
 * and exits 0. A bad config exits 1 naming the bad field.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { configReaders, secretsManagerReader } from '../core/aws/index.ts';
import { dynamoControlStore } from '../core/control/index.ts';
import {
  awsClientConfig,
  ConfigError,
  controlPlaneSettings,
  createLogger,
  ENV,
  loadConfig,
  requireEnv,
  resourceNamesFromEnv,
  runtimeFromEnv,
} from '../core/index.ts';
import { resolveAuthUsers } from './credentials.ts';
import { startListener, stopListener } from './listener.ts';
import { storageClients } from './storage-clients.ts';
import { loadTlsMaterial, parseTlsSecret, type TlsMaterial } from './tls.ts';

// Local state (the self-signed pair) lives where `npm start` keeps it.
const DATA_DIR = '.mailbridge';

async function main(): Promise<void> {
  const logger = createLogger('listener');
  const runtime = runtimeFromEnv();
  const source = requireEnv(ENV.config);
  const { bucket, inboundQueueUrl } = resourceNamesFromEnv(['bucket', 'inboundQueueUrl']);
  const aws = awsClientConfig();
  const { forcePathStyle, ...common } = aws;
  const secrets = new SecretsManagerClient(common);
  const secretsManager = secretsManagerReader(secrets);

  const configReader = new S3Client({ ...common, forcePathStyle });
  const config = await loadConfig(source, runtime, configReaders(configReader)).finally(() =>
    configReader.destroy(),
  );
  const { s3, sqs, dynamodb } = storageClients(config.limits, aws);
  const authUsers = await resolveAuthUsers(config, { secretsManager });
  let tls: TlsMaterial = await loadTlsMaterial(config, { runtime, secretsManager, dataDir: DATA_DIR });
  const settings = controlPlaneSettings(config);
  const control = process.env[ENV.controlTable]
    ? {
        store: dynamoControlStore(dynamodb, settings.tableName, { retentionDays: settings.retentionDays }),
        acceptUnverifiedDomains: settings.acceptUnverifiedDomains,
      }
    : undefined;
  const listener = await startListener({
    config,
    s3,
    sqs,
    bucket,
    inboundQueueUrl,
    tls,
    authUsers,
    logger,
    ...(control ? { control } : {}),
  });
  for (const bound of listener.listeners) logger.info('listening', { ...bound });
  logger.info('health endpoint', { host: config.health.host, port: listener.healthPort, path: '/healthz' });

  let reload: NodeJS.Timeout | undefined;
  if (config.tls.source === 'secrets-manager') {
    const { secretId, reloadInterval } = config.tls;
    reload = setInterval(async () => {
      try {
        const next = parseTlsSecret(await secretsManager(secretId), secretId);
        if (String(next.cert) === String(tls.cert) && String(next.key) === String(tls.key)) return;
        listener.updateTls(next.key, next.cert);
        tls = next;
        logger.info('TLS certificate reloaded', { secretId });
      } catch (error) {
        logger.warn('TLS certificate reload failed; keeping the current one', {
          secretId,
          error: (error as Error).message,
        });
      }
    }, reloadInterval * 1000);
    reload.unref();
  }

  const stop = async (signal: string) => {
    logger.info('draining', { signal });
    clearInterval(reload);
    process.exitCode = await stopListener(listener, [s3, sqs, dynamodb, secrets], logger);
    logger.info('stopped');
    process.exit();
  };
  process.once('SIGTERM', (signal) => void stop(signal));
  process.once('SIGINT', (signal) => void stop(signal));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
