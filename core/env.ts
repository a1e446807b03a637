import { type Config, DEFAULT_RAW_RETENTION_DAYS, type Runtime } from './config.ts';
import { ConfigError } from './errors.ts';

/**
 * The environment variables the deployment hands to the listener and the functions (infra sets
 * them from the resources each part is given; the parts read them here).
 */
export const ENV = {
  /** `local` or `aws`. */
  runtime: 'MAILBRIDGE_RUNTIME',
  /** The config: a file path or `s3://bucket/key`. */
  config: 'MAILBRIDGE_CONFIG',
  /** SHA-256 of the deployed config; not read: a new value rolls tasks and function environments. */
  configSha256: 'MAILBRIDGE_CONFIG_SHA256',
  bucket: 'MAILBRIDGE_BUCKET',
  inboundQueueUrl: 'MAILBRIDGE_INBOUND_QUEUE_URL',
  deliveryQueueUrl: 'MAILBRIDGE_DELIVERY_QUEUE_URL',
  deliveryDlqUrl: 'MAILBRIDGE_DELIVERY_DLQ_URL',
  inboundDlqUrl: 'MAILBRIDGE_INBOUND_DLQ_URL',
  /** The control plane's DynamoDB table: message log, refusals, API routes, domains and keys. */
  controlTable: 'MAILBRIDGE_CONTROL_TABLE',
  /** Days the message log keeps a message: the raw mail's lifecycle, so a log entry never outlives its mail. */
  controlRetentionDays: 'MAILBRIDGE_CONTROL_RETENTION_DAYS',
} as const;

/** A required environment variable; the error names it. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (!value) throw new ConfigError('environment', [`${name}: required environment variable is not set`]);
  return value;
}

/** Where the code runs, from `MAILBRIDGE_RUNTIME` (`local` or `aws`). @default 'aws' */
export function runtimeFromEnv(env: NodeJS.ProcessEnv = process.env): Runtime {
  const value = env[ENV.runtime] ?? 'aws';
  if (value !== 'local' && value !== 'aws') {
    throw new ConfigError('environment', [`${ENV.runtime}: expected "local" or "aws", got "${value}"`]);
  }
  return value;
}

/** The control plane's settings in force in one part. */
export interface ControlPlaneSettings {
  /** `MAILBRIDGE_CONTROL_TABLE` when the deployment sets it, else `controlPlane.tableName`. */
  readonly tableName: string;
  /** `controlPlane.retentionDays`, else `MAILBRIDGE_CONTROL_RETENTION_DAYS` (the raw mail's lifecycle), else its default. */
  readonly retentionDays: number;
  readonly acceptUnverifiedDomains: boolean;
  /** `controlPlane.mxHost`, else `hostname`. */
  readonly mxHost: string;
}

/**
 * The config's `controlPlane` section completed by what the deployment hands over: its table and
 * the raw mail's lifecycle. A bad retention variable is named in the error.
 */
export function controlPlaneSettings(
  config: Pick<Config, 'hostname' | 'controlPlane'>,
  env: NodeJS.ProcessEnv = process.env,
): ControlPlaneSettings {
  const { controlPlane } = config;
  let retentionDays = controlPlane.retentionDays;
  const fromEnv = env[ENV.controlRetentionDays];
  if (retentionDays === undefined && fromEnv) {
    retentionDays = Number(fromEnv);
    if (!Number.isInteger(retentionDays) || retentionDays < 1) {
      throw new ConfigError('environment', [
        `${ENV.controlRetentionDays}: whole days, at least 1; got "${fromEnv}"`,
      ]);
    }
  }
  return {
    tableName: env[ENV.controlTable] || controlPlane.tableName,
    retentionDays: retentionDays ?? DEFAULT_RAW_RETENTION_DAYS,
    acceptUnverifiedDomains: controlPlane.acceptUnverifiedDomains,
    mxHost: controlPlane.mxHost ?? config.hostname,
  };
}

/** Names of the deployment's resources, handed to every part by environment variables. */
export interface ResourceNames {
  /** `MAILBRIDGE_BUCKET`: raw messages, payloads and attachments. */
  readonly bucket: string;
  /** `MAILBRIDGE_INBOUND_QUEUE_URL`: listener → parse. */
  readonly inboundQueueUrl: string;
  /** `MAILBRIDGE_DELIVERY_QUEUE_URL`: parse → deliver. */
  readonly deliveryQueueUrl: string;
  /** `MAILBRIDGE_DELIVERY_DLQ_URL`: exhausted or permanently failed deliveries, with the reason. */
  readonly deliveryDlqUrl: string;
  /** `MAILBRIDGE_INBOUND_DLQ_URL`: messages parse gave up on (recipients that no longer route, with the reason). */
  readonly inboundDlqUrl: string;
}

/** Reads the resource names a part needs; each missing variable is named in the error. */
export function resourceNamesFromEnv<K extends keyof ResourceNames>(
  keys: readonly K[],
  env: NodeJS.ProcessEnv = process.env,
): Pick<ResourceNames, K> {
  const variables: Record<keyof ResourceNames, string> = ENV;
  const missing = keys
    .filter((key) => !env[variables[key]])
    .map((key) => `${variables[key]}: required, not set`);
  if (missing.length > 0) throw new ConfigError('environment', missing);
  return Object.fromEntries(keys.map((key) => [key, env[variables[key]]])) as Pick<ResourceNames, K>;
}

/**
 * Settings for AWS SDK clients. With `AWS_ENDPOINT_URL` (the emulator) S3 uses path-style URLs and,
 * when no credentials are configured, fixed local ones; in AWS the SDK's defaults apply.
 */
export function awsClientConfig(env: NodeJS.ProcessEnv = process.env): {
  region: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
} {
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const endpoint = env.AWS_ENDPOINT_URL;
  if (!endpoint) return { region };
  const credentials = env.AWS_ACCESS_KEY_ID ? undefined : { accessKeyId: 'local', secretAccessKey: 'local' };
  return { region, endpoint, forcePathStyle: true, ...(credentials ? { credentials } : {}) };
}
