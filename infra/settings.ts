import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import * as z from 'zod';
import type { ScannersConfig } from '../core/filtering/index.ts';
import { type Config, ConfigError, formatConfigPath, parseConfig, parseDocumentText } from '../core/index.ts';
import { fargateMemoryChoices } from './fargate.ts';
import { DLQ_RETENTION_DAYS } from './queues.ts';
import { type ScannerSidecarSettings, withScannerSidecars } from './scanner-sidecars.ts';

/** CloudWatch Logs retention periods, in days, that the service accepts. */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

const FunctionSettingsSchema = (defaults: { memoryMiB: number; batchSize: number }) =>
  z
    .strictObject({
      memoryMiB: z.number().int().min(128).max(10240).default(defaults.memoryMiB),
      batchSize: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(defaults.batchSize)
        .meta({ description: 'SQS messages per invocation; failures are reported per message.' }),
      reservedConcurrency: z
        .number()
        .int()
        .min(1)
        .optional()
        .meta({ description: 'Reserved concurrent executions. Unset: the account pool, no reservation.' }),
      maxConcurrency: z
        .number()
        .int()
        .min(2)
        .max(1000)
        .optional()
        .meta({ description: "The SQS trigger's maximum concurrency. Unset: Lambda's own scaling." }),
    })
    .prefault({});

/** The deployment settings file (`mailbridge.deploy.json`): what differs between deployments. */
export const DeploySettingsSchema = z
  .strictObject({
    stackName: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'letters, digits and "-", starting with a letter')
      .default('Mailbridge'),
    account: z
      .string()
      .regex(/^\d{12}$/, '12 digits')
      .optional()
      .meta({ description: 'AWS account. Unset: environment-agnostic (required with vpc.id).' }),
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'a region such as us-east-1')
      .optional()
      .meta({ description: 'AWS region. Unset: environment-agnostic (required with vpc.id).' }),
    config: z.string().min(1).meta({
      description:
        'The mailbridge config file (domains, routes, listeners, TLS, users; core/config.ts), relative to this file. Deployed to the bucket, so routes change without rebuilding the image.',
    }),
    alarmEmail: z.email().optional().meta({ description: 'Subscribed to the alarm topic. Unset: none.' }),
    nothingAcceptedHours: z.number().int().min(1).max(24).nullable().default(24).meta({
      description:
        'Alarm when no message was accepted for this many hours (a broken MX record receives nothing). null: no such alarm.',
    }),
    vpc: z
      .strictObject({
        id: z
          .string()
          .regex(/^vpc-[0-9a-f]{8,17}$/, 'a VPC id such as vpc-0123456789abcdef0')
          .optional()
          .meta({ description: 'Use this VPC (looked up at synth: needs credentials). Unset: a new VPC.' }),
        maxAzs: z.number().int().min(2).max(6).default(2),
        flowLogs: z.boolean().default(false).meta({
          description:
            'Record rejected traffic of the new VPC (VPC flow logs to the access-log bucket), billed per GB (docs/cost.md). The tasks admit only the load balancer either way.',
        }),
      })
      .prefault({}),
    listener: z
      .strictObject({
        tasks: z.number().int().min(2).default(2).meta({ description: 'Tasks always running, across AZs.' }),
        maxTasks: z.number().int().min(2).default(6),
        cpu: z
          .union([z.literal(256), z.literal(512), z.literal(1024), z.literal(2048), z.literal(4096)])
          .default(256)
          .meta({
            description:
              "The listener's CPU units (arm64), without scanner sidecars; the default is sized from the bench (docs/cost.md).",
          }),
        memoryMiB: z.number().int().default(1024),
        publicPorts: z
          .record(z.string().regex(/^\d{1,5}$/, 'a port number'), z.number().int().min(1024).max(65535))
          .optional()
          .meta({
            description:
              'NLB port → container port of a config listener. Unset: 25→mx, 465→implicit-tls, 587 and 2525→submission.',
          }),
        elasticIps: z
          .array(
            z.strictObject({
              allocationId: z
                .string()
                .regex(/^eipalloc-[0-9a-f]{8,17}$/, 'an allocation id such as eipalloc-0123456789abcdef0'),
              publicIp: z.ipv4(),
            }),
          )
          .min(1)
          .optional()
          .meta({
            description:
              'Elastic IPs you already have (one per AZ, in AZ order) for the NLB, kept when the stack goes. Unset: the stack allocates them.',
          }),
        connectionsPerTask: z.number().int().min(1).optional().meta({
          description:
            'Scale out above this many open connections per task. Unset: half of limits.maxConnections.',
        }),
        containerInsights: z.boolean().default(false).meta({
          description:
            "Container Insights on the cluster: per-task metrics, billed as custom metrics (docs/cost.md). The alarms, dashboard and scaling don't need it.",
        }),
        scanners: z
          .strictObject({
            rspamd: z.boolean().default(false).meta({
              description:
                'Run rspamd beside the listener in each task (spam verdicts); the config gets its address.',
            }),
            clamav: z.boolean().default(false).meta({
              description:
                'Run ClamAV (clamd and freshclam) beside the listener in each task (malware verdicts); the config gets its address.',
            }),
            quarantineAlarmPerHour: z.number().int().min(1).default(100).meta({
              description: 'Alarm when more messages than this are quarantined in an hour.',
            }),
          })
          .prefault({})
          .meta({
            description:
              'Content scanners as sidecar containers; each raises the task size (docs/cost.md). Off by default.',
          }),
      })
      .prefault({}),
    api: z
      .strictObject({
        rateLimit: z.number().int().min(1).default(50).meta({
          description: 'Requests per second the control plane API takes on average; beyond it, 429.',
        }),
        burstLimit: z.number().int().min(1).default(100).meta({
          description: 'Requests the API takes at once above the rate.',
        }),
        memoryMiB: z.number().int().min(128).max(10240).default(512),
      })
      .prefault({}),
    functions: z
      .strictObject({
        parse: FunctionSettingsSchema({ memoryMiB: 768, batchSize: 10 }),
        // A try may take the route's timeout (15 s); 3 in a row still fit the 60 s function timeout.
        deliver: FunctionSettingsSchema({ memoryMiB: 512, batchSize: 3 }),
      })
      .prefault({}),
    storage: z
      .strictObject({
        encryption: z.enum(['s3', 'kms']).default('s3').meta({
          description:
            "'s3': S3-managed keys for the bucket, a DynamoDB-owned key for the control table. 'kms': a key of your own (rotated yearly) for both; needs account and region.",
        }),
        versioned: z.boolean().default(false),
        rawDays: z.number().int().min(1).default(30),
        payloadDays: z.number().int().min(1).default(30),
        attachmentDays: z.number().int().min(1).default(30),
      })
      .prefault({}),
    secrets: z
      .strictObject({
        create: z.boolean().default(true).meta({
          description:
            'Create the SMTP AUTH and signing secrets the config names, with generated values. false: you create them.',
        }),
      })
      .prefault({}),
    logRetentionDays: z
      .number()
      .int()
      .refine((days) => (LOG_RETENTION_DAYS as readonly number[]).includes(days), {
        message: `one of ${LOG_RETENTION_DAYS.join(', ')}`,
      })
      .default(30),
  })
  .superRefine((settings, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const { listener, storage, functions, vpc } = settings;
    if (listener.maxTasks < listener.tasks)
      issue(['listener', 'maxTasks'], 'must be at least listener.tasks');
    if (settings.api.burstLimit < settings.api.rateLimit)
      issue(['api', 'burstLimit'], 'must be at least api.rateLimit');
    const memory = fargateMemoryChoices(listener.cpu);
    if (!memory.includes(listener.memoryMiB)) {
      const range = `${memory[0]}-${memory.at(-1)}`;
      issue(
        ['listener', 'memoryMiB'],
        `with cpu ${listener.cpu}: one of ${range} MiB in steps of ${memory[1]! - memory[0]!}`,
      );
    }
    // A redriven delivery job must still find its payload.
    if (storage.payloadDays <= DLQ_RETENTION_DAYS) {
      issue(
        ['storage', 'payloadDays'],
        `must exceed the delivery DLQ retention (${DLQ_RETENTION_DAYS} days)`,
      );
    }
    if (storage.attachmentDays < storage.payloadDays) {
      issue(
        ['storage', 'attachmentDays'],
        'must be at least storage.payloadDays (payloads link to attachments)',
      );
    }
    for (const name of ['parse', 'deliver'] as const) {
      const { reservedConcurrency, maxConcurrency } = functions[name];
      if (
        reservedConcurrency !== undefined &&
        maxConcurrency !== undefined &&
        maxConcurrency > reservedConcurrency
      ) {
        issue(
          ['functions', name, 'maxConcurrency'],
          'must not exceed reservedConcurrency (the excess is throttled)',
        );
      }
    }
    if (vpc.id && (!settings.account || !settings.region)) {
      issue(['vpc', 'id'], 'an existing VPC is looked up at synth: set account and region too');
    }
    if (storage.encryption === 'kms' && (!settings.account || !settings.region)) {
      issue(
        ['storage', 'encryption'],
        "'kms' also encrypts the control table with the bucket's key, which a DynamoDB table can use only in a stack bound to one account and region: set account and region too",
      );
    }
  });

export type DeploySettings = z.output<typeof DeploySettingsSchema>;
export type DeploySettingsInput = z.input<typeof DeploySettingsSchema>;

/** Everything the stack is built from: the settings and the validated config they point at. */
export interface Deployment {
  readonly settings: DeploySettings;
  /** The config, validated for the `aws` runtime. */
  readonly config: Config;
  /**
   * The config document as deployed to the bucket, in JSON: as written (defaults unapplied), plus
   * the scanner sidecars' addresses when the settings run them.
   */
  readonly configJson: string;
  /** The `scanners` section the listener reads from `configJson` (each non-null one runs as a sidecar). */
  readonly scanners: ScannersConfig;
  /** Absolute path of the config file. */
  readonly configPath: string;
}

/** Validates a settings document; the error names each bad setting by its path. */
export function parseDeploySettings(document: unknown, source: string): DeploySettings {
  const result = DeploySettingsSchema.safeParse(document);
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((issue) => `${formatConfigPath(issue.path) || '(root)'}: ${issue.message}`),
    );
  }
  return result.data;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::']);
/** The NLB's TCP idle timeout; an SMTP session idle for longer is cut by the load balancer. */
const NLB_IDLE_TIMEOUT_SECONDS = 350;

/**
 * What the AWS deployment needs from the config beyond what the listener itself checks. The
 * constructs check what is theirs (ListenerService: closeTimeout and public ports; Secrets: the
 * TLS source), so each rule is written once.
 */
function deploymentIssues(config: Config): string[] {
  const issues: string[] = [];
  if (config.hostname === 'localhost' || !config.hostname.includes('.')) {
    issues.push(
      'hostname: set the public name of the MX host (e.g. mx.example.com); it goes in the MX record',
    );
  }
  config.listeners.forEach((listener, l) => {
    if (!WILDCARD_HOSTS.has(listener.host)) {
      issues.push(`listeners[${l}].host: must be 0.0.0.0 so the load balancer reaches it`);
    }
    if (listener.port < 1024) {
      issues.push(
        `listeners[${l}].port: the container runs as non-root; use a port ≥ 1024 (the NLB maps 25 to it)`,
      );
    }
    if (listener.port === config.health.port)
      issues.push(`listeners[${l}].port: the health port is ${listener.port}`);
  });
  if (!WILDCARD_HOSTS.has(config.health.host))
    issues.push('health.host: must be 0.0.0.0 for the NLB health check');
  if (config.health.port < 1024)
    issues.push('health.port: use a port ≥ 1024 (the container runs as non-root)');
  if (config.limits.socketTimeout >= NLB_IDLE_TIMEOUT_SECONDS) {
    issues.push(`limits.socketTimeout: must be below the NLB idle timeout (${NLB_IDLE_TIMEOUT_SECONDS}s)`);
  }
  const envRef = (field: string) =>
    issues.push(`${field}.env: the AWS deployment sets no such variables; use { secretsManager: name }`);
  config.routes.forEach((route, r) => {
    route.secret.forEach((ref, s) => {
      if ('env' in ref) envRef(`routes[${r}].secret[${s}]`);
    });
  });
  config.auth.users.forEach((user, u) => {
    if ('env' in user.password) envRef(`auth.users[${u}].password`);
  });
  return issues;
}

/**
 * Reads the settings file and the config file it names, and validates both for AWS. A bad setting
 * or config field fails synth with an error that names it (`listener.tasks: …`, `routes[0].endpoints[0]: …`).
 */
export function loadDeployment(settingsPath: string): Deployment {
  const source = resolve(settingsPath);
  let document: unknown;
  try {
    document = JSON.parse(readFileSync(source, 'utf8'));
  } catch (error) {
    throw new ConfigError(source, [`(file): cannot read JSON: ${(error as Error).message}`], {
      cause: error,
    });
  }
  const settings = parseDeploySettings(document, source);
  const configPath = resolve(dirname(source), settings.config);
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (error) {
    throw new ConfigError(source, [`config: cannot read ${configPath}: ${(error as Error).message}`], {
      cause: error,
    });
  }
  const raw = parseDocumentText(text, configPath) as Record<string, unknown>;
  const config = parseConfig(raw, { source: configPath, runtime: 'aws' });
  const configIssues = deploymentIssues(config);
  if (configIssues.length > 0) throw new ConfigError(configPath, configIssues);
  const sidecars = withScannerSidecars(raw, settings.listener.scanners satisfies ScannerSidecarSettings);
  if (sidecars.issues.length > 0) throw new ConfigError(configPath, sidecars.issues);
  return {
    settings,
    config,
    configJson: JSON.stringify(sidecars.document),
    scanners: sidecars.scanners,
    configPath,
  };
}
