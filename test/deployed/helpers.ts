import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Template } from 'aws-cdk-lib/assertions';
import { CONFIG_OBJECT_KEY } from '../../core/index.ts';
import { TABLE } from '../../harness/control-store.ts';
import type { TestEmulator } from '../../harness/emulator.ts';
import { createSecretsManager, type SecretsManagerService } from '../../harness/secrets-manager.ts';
import { loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import { buildStack, EXAMPLE_SETTINGS } from '../infra/helpers.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };

/** The example app, synthesized as `cdk synth` does (functions bundled); one per test file. */
export interface SynthesizedApp {
  readonly stack: MailbridgeStack;
  readonly resources: Record<string, Resource>;
  /** The cloud assembly directory, with each asset staged as `asset.<hash>`. */
  readonly outdir: string;
  /** The config document the custom resource writes to the bucket. */
  readonly configJson: string;
  cleanup(): void;
}

export function synthesizeApp(): SynthesizedApp {
  const deployment = loadDeployment(EXAMPLE_SETTINGS);
  const built = buildStack(deployment);
  const resources = Template.fromStack(built.stack).toJSON().Resources as Record<string, Resource>;
  return {
    stack: built.stack,
    resources,
    outdir: built.app.outdir,
    configJson: deployment.configJson,
    cleanup: built.cleanup,
  };
}

/** The logical ids of the stack's bucket, queues and table, each with what stands in for it locally. */
export function emulatorRefs(
  app: Pick<SynthesizedApp, 'stack'>,
  emulator: Pick<TestEmulator, 'resources'>,
): Map<string, string> {
  const { stack } = app;
  const id = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as never);
  return new Map([
    [id(stack.storage.bucket), emulator.resources.bucket],
    [id(stack.queues.inbound), emulator.resources.inboundQueueUrl],
    [id(stack.queues.delivery), emulator.resources.deliveryQueueUrl],
    [id(stack.queues.deliveryDlq), emulator.resources.deliveryDlqUrl],
    [id(stack.queues.inboundDlq), emulator.resources.inboundDlqUrl],
    [id(stack.controlPlane.table.table), TABLE],
    ['AWS::Region', 'us-east-1'],
  ]);
}

/**
 * An environment value of the template with its references replaced: `Ref` to the bucket or a
 * queue, and `Fn::Join`. Anything else is a reference the test does not know: it fails, since a
 * part would read a value nobody provides.
 */
export function resolveValue(value: unknown, refs: ReadonlyMap<string, string>): string {
  if (typeof value === 'string') return value;
  const object = value as Record<string, unknown>;
  if (typeof object.Ref === 'string' && refs.has(object.Ref)) return refs.get(object.Ref)!;
  if (Array.isArray(object['Fn::Join'])) {
    const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
    return parts.map((part) => resolveValue(part, refs)).join(separator);
  }
  throw new Error(`no stand-in for ${JSON.stringify(value)}`);
}

/** An environment record of the template, resolved (see {@link resolveValue}). */
export function resolveEnvironment(
  environment: Record<string, unknown>,
  refs: ReadonlyMap<string, string>,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(environment).map(([name, value]) => [name, resolveValue(value, refs)]),
  );
}

/** Writes the deployed config document where the custom resource puts it. */
export async function putDeployedConfig(emulator: TestEmulator, json: string): Promise<void> {
  await emulator.s3.send(
    new PutObjectCommand({ Bucket: emulator.resources.bucket, Key: CONFIG_OBJECT_KEY, Body: json }),
  );
}

/** One endpoint for every AWS API the parts call: Secrets Manager and DynamoDB answered beside the emulator's S3 and SQS. */
export interface AwsEndpoint {
  readonly url: string;
  /** Secrets Manager as AWS answers it (secrets stored, requests seen, faults to inject). */
  readonly secretsManager: SecretsManagerService;
  close(): Promise<void>;
}

/**
 * The SDK clients share one `AWS_ENDPOINT_URL`, and the emulator speaks only S3 and SQS: this
 * endpoint answers Secrets Manager itself (AWS JSON 1.1, with AWS's error shapes), forwards
 * DynamoDB requests to `dynamoEndpoint` (dynalite) when given, and everything else to the emulator.
 */
export async function startAwsEndpoint(
  emulatorEndpoint: string,
  options: { dynamoEndpoint?: string } = {},
): Promise<AwsEndpoint> {
  const secretsManager = createSecretsManager();
  const emulator = new URL(emulatorEndpoint);
  const dynamo = options.dynamoEndpoint ? new URL(options.dynamoEndpoint) : undefined;
  const server = createServer((req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    if (target.startsWith('secretsmanager.')) {
      void secretsManager.handle(req, res);
      return;
    }
    const to = dynamo && target.startsWith('DynamoDB_') ? dynamo : emulator;
    const forward = request(
      { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    secretsManager,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
