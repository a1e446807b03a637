import { join, resolve } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, LoggingFormat, Runtime, SystemLogLevel } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV, QUEUE_SETTINGS } from '../core/index.ts';
import { ESM_REQUIRE_BANNER } from './bundle-companions.ts';
import { CHARSET_TABLES_EXTERNAL } from './charset-tables.ts';
import type { ControlTable } from './control-plane.ts';
import type { DeployedConfig } from './deployed-config.ts';
import type { Secrets } from './secrets.ts';
import type { Storage } from './storage.ts';

const REPO_ROOT = resolve(import.meta.dirname, '..');

/** The queue-triggered functions, each bundled from `functions/<name>/handler.ts` (the API's is in ControlPlane). */
export const FUNCTION_NAMES = ['parse', 'deliver'] as const;

/**
 * V8 flags of both functions. A 1 MiB young generation makes V8 collect the short-lived buffers of
 * streamed mail (S3 chunks, attachment parts) much sooner: on a 10 MB message with two attachments
 * the parse path grew 4 MiB instead of 27 MiB, at the same speed (bench, section 4).
 */
export const FUNCTION_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** NODE_OPTIONS of both functions. */
export const FUNCTION_NODE_OPTIONS = [...FUNCTION_V8_FLAGS].join(' ');

/**
 * How both functions are bundled (esbuild, at synth); bench/bundles.ts bundles with the same options.
 * No source map: shipped in the zip it quadrupled parse's (3.4 → 13.5 MB), and with
 * --enable-source-maps the first logged error decoded it (≈ 260 ms in parse, 140 ms in deliver;
 * bench section 5). keepNames leaves function names in stack traces instead.
 */
export const FUNCTION_BUNDLING = {
  format: OutputFormat.ESM,
  target: 'node24',
  mainFields: ['module', 'main'],
  minify: true,
  sourceMap: false,
  keepNames: true,
  // Pin the SDK the tests ran against instead of the runtime's copy.
  bundleAwsSDK: true,
  externalModules: [CHARSET_TABLES_EXTERNAL],
  esbuildArgs: Object.fromEntries(
    ['undici', '@postalsys/vmc', 'fast-xml-parser'].map((name) => [
      `--alias:${name}`,
      './infra/bimi-stub.ts',
    ]),
  ),
  // What the bundle loads from files beside it: charset tables, the unpack worker (bundle-companions.ts).
  commandHooks: {
    beforeBundling: (): string[] => [],
    beforeInstall: (): string[] => [],
    afterBundling: (inputDir: string, outputDir: string): string[] => [
      `"${process.execPath}" "${join(inputDir, 'infra', 'bundle-companions.ts')}" "${outputDir}"`,
    ],
  },
  banner: ESM_REQUIRE_BANNER,
};

/** One Lambda function bundled from `functions/<entry>/handler.ts`, as {@link bundledFunction} makes it. */
export interface BundledFunctionProps {
  /** The folder under functions/ holding its `handler.ts`. */
  readonly entry: 'parse' | 'deliver' | 'api';
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly reservedConcurrentExecutions?: number;
  /** The deployed config it reads (and waits for); its location goes in the environment. */
  readonly deployedConfig: DeployedConfig;
  /** Resource names; secret values are read from Secrets Manager, never put here. */
  readonly environment: Readonly<Record<string, string>>;
  readonly logRetention: RetentionDays;
}

/**
 * A function as every mailbridge function is deployed: Node.js 24 on arm64, bundled at synth by
 * the locally installed esbuild (no Docker), JSON logs to a log group of its own with its
 * retention, and a role of its own that may write to that group and read the deployed config,
 * nothing else yet: callers grant the rest. Construct ids `<label>`, `<label>Role`, `<label>Logs`.
 */
export function bundledFunction(
  scope: Construct,
  label: string,
  props: BundledFunctionProps,
): NodejsFunction {
  const logGroup = new LogGroup(scope, `${label}Logs`, {
    retention: props.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  // A role of our own instead of the AWSLambdaBasicExecutionRole managed policy: logs to this group only.
  const role = new Role(scope, `${label}Role`, { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
  logGroup.grantWrite(role);
  const fn = new NodejsFunction(scope, label, {
    entry: resolve(REPO_ROOT, 'functions', props.entry, 'handler.ts'),
    handler: 'handler',
    projectRoot: REPO_ROOT,
    depsLockFilePath: resolve(REPO_ROOT, 'package-lock.json'),
    runtime: Runtime.NODEJS_24_X,
    architecture: Architecture.ARM_64,
    memorySize: props.memorySize,
    timeout: props.timeout,
    reservedConcurrentExecutions: props.reservedConcurrentExecutions,
    role,
    logGroup,
    loggingFormat: LoggingFormat.JSON,
    // START, END and REPORT lines are INFO: at WARN Lambda keeps only its warnings and errors (timeouts,
    // crashes), and a message costs two invocations' worth of log bytes less (docs/cost.md).
    systemLogLevelV2: SystemLogLevel.WARN,
    environment: {
      ...props.deployedConfig.environment,
      ...props.environment,
      NODE_OPTIONS: FUNCTION_NODE_OPTIONS,
    },
    bundling: { ...FUNCTION_BUNDLING, forceDockerBundling: false },
  });
  props.deployedConfig.addReader(fn, fn);
  return fn;
}

/** Settings of one function and its SQS trigger. */
export interface FunctionOptions {
  /**
   * Memory, MiB (CPU scales with it).
   * @default - 1024 for parse, 512 for deliver
   */
  readonly memorySize?: number;
  /**
   * SQS messages per invocation; failures are reported per message.
   * @default - 10 for parse, 3 for deliver (3 tries at the 15 s route timeout fit the 60 s function timeout)
   */
  readonly batchSize?: number;
  /**
   * Reserved concurrent executions.
   * @default - none: the function draws on the account's unreserved pool
   */
  readonly reservedConcurrency?: number;
  /**
   * Maximum concurrent invocations by the SQS trigger (2-1000); at most `reservedConcurrency`.
   * @default - no limit beyond Lambda's scaling
   */
  readonly maxConcurrency?: number;
}

export interface FunctionsProps {
  /** The deployed config both functions read (and wait for). */
  readonly deployedConfig: DeployedConfig;
  /** Raw mail, payloads (those too large for a job), attachments and endpoint health. */
  readonly storage: Storage;
  /** The inbound queue: the parse function's trigger. */
  readonly inboundQueue: IQueue;
  /** The delivery queue: the deliver function's trigger, where parse sends jobs. */
  readonly deliveryQueue: IQueue;
  /** Where deliver moves exhausted and permanently failed jobs, with the reason. */
  readonly deliveryDlq: IQueue;
  /** Where parse dead-letters mail whose recipients no longer route, with the reason. */
  readonly inboundDlq: IQueue;
  /** The webhook signing secrets deliver reads. */
  readonly secrets: Secrets;
  /** The control plane's table: both read API routes from it and write the message log. */
  readonly controlTable: ControlTable;
  /** @default - see FunctionOptions */
  readonly parse?: FunctionOptions;
  /** @default - see FunctionOptions */
  readonly deliver?: FunctionOptions;
  /**
   * Retention of the functions' logs.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
}

/**
 * The parse and deliver functions: Node.js 24 on arm64, bundled at synth by the locally installed
 * esbuild (no Docker), each triggered by its queue with partial batch responses. Outside any VPC on
 * purpose: a VPC-attached function could reach private addresses, which webhook delivery must not.
 * Each has its own role; its environment and grants are those of the resources it uses, no more.
 */
export class Functions extends Construct {
  public readonly parse: NodejsFunction;
  public readonly deliver: NodejsFunction;
  public readonly parseSource: SqsEventSource;
  public readonly deliverSource: SqsEventSource;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const { storage, deployedConfig, controlTable } = props;
    const make = (
      name: 'parse' | 'deliver',
      options: FunctionOptions,
      defaults: Required<Pick<FunctionOptions, 'memorySize' | 'batchSize'>>,
      queue: IQueue,
      environment: Record<string, string>,
    ) => {
      const { reservedConcurrency, maxConcurrency } = options;
      if (
        reservedConcurrency !== undefined &&
        maxConcurrency !== undefined &&
        maxConcurrency > reservedConcurrency
      ) {
        throw new Error(
          `${this.node.path}: ${name} maxConcurrency ${maxConcurrency} exceeds reservedConcurrency ${reservedConcurrency}; the excess would be throttled`,
        );
      }
      const fn = bundledFunction(this, name === 'parse' ? 'Parse' : 'Deliver', {
        entry: name,
        memorySize: options.memorySize ?? defaults.memorySize,
        timeout: Duration.seconds(QUEUE_SETTINGS.functionTimeoutSeconds[name]),
        reservedConcurrentExecutions: reservedConcurrency,
        deployedConfig,
        environment: { [ENV.bucket]: storage.bucket.bucketName, ...controlTable.environment, ...environment },
        logRetention,
      });
      const source = new SqsEventSource(queue, {
        batchSize: options.batchSize ?? defaults.batchSize,
        reportBatchItemFailures: true,
        maxConcurrency,
      });
      fn.addEventSource(source);
      return [fn, source] as const;
    };
    [this.parse, this.parseSource] = make(
      'parse',
      props.parse ?? {},
      // The size docs/cost.md picks from the bench's measured CPU, waits and peak memory.
      { memorySize: 768, batchSize: 10 },
      props.inboundQueue,
      {
        [ENV.deliveryQueueUrl]: props.deliveryQueue.queueUrl,
        [ENV.inboundDlqUrl]: props.inboundDlq.queueUrl,
      },
    );
    [this.deliver, this.deliverSource] = make(
      'deliver',
      props.deliver ?? {},
      { memorySize: 512, batchSize: 3 },
      props.deliveryQueue,
      {
        [ENV.deliveryQueueUrl]: props.deliveryQueue.queueUrl,
        [ENV.deliveryDlqUrl]: props.deliveryDlq.queueUrl,
      },
    );

    // Least privilege, function by function. The SQS triggers add receive/delete/change-visibility on their own queue.
    const { parse, deliver } = this;
    storage.grantReadRaw(parse);
    storage.grantWritePayloads(parse);
    props.deliveryQueue.grantSendMessages(parse);
    // Mail whose recipients no longer route is dead-lettered by parse itself, with the reason.
    props.inboundDlq.grantSendMessages(parse);

    storage.grantReadPayloads(deliver);
    // A DLQ entry too large for one message stores its inline payload first.
    storage.grantPutPayloads(deliver);
    // Deliver signs the payload's links again at each try, so it must be allowed to read what they point at.
    storage.grantReadRaw(deliver);
    storage.grantReadAttachments(deliver);
    storage.grantEndpointHealth(deliver);
    props.secrets.grantSigningRead(deliver);
    props.deliveryDlq.grantSendMessages(deliver);

    // Parse resolves recipients against API routes too; both write the message log.
    for (const fn of [parse, deliver]) {
      controlTable.grantRouteReads(fn);
      controlTable.grantLogWrites(fn);
    }
    // Parse marks duplicates with a conditional write in the table.
    controlTable.grantDuplicateMarkers(parse);
    // Deliver signs for API routes with the secrets the API made.
    controlTable.grantRouteSecretsRead(deliver);
  }
}
