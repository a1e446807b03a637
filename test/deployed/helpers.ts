import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Template } from 'aws-cdk-lib/assertions';
import { CONFIG_OBJECT_KEY, loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import type { TestEmulator } from '../helpers/emulator.ts';
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

/** The logical ids of the stack's bucket and queues, each with what stands in for it on the emulator. */
export function emulatorRefs(app: SynthesizedApp, emulator: TestEmulator): Map<string, string> {
  const { stack } = app;
  const id = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as never);
  return new Map([
    [id(stack.storage.bucket), emulator.resources.bucket],
    [id(stack.queues.inbound), emulator.resources.inboundQueueUrl],
    [id(stack.queues.delivery), emulator.resources.deliveryQueueUrl],
    [id(stack.queues.deliveryDlq), emulator.resources.deliveryDlqUrl],
    [id(stack.queues.inboundDlq), emulator.resources.inboundDlqUrl],
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

/** One endpoint for every AWS API the parts call: Secrets Manager answered here, S3 and SQS by the emulator. */
export interface AwsEndpoint {
  readonly url: string;
  /** Secret name → its string value. */
  readonly secrets: Map<string, string>;
  close(): Promise<void>;
}

/**
 * The emulator has no Secrets Manager, and the SDK clients share one `AWS_ENDPOINT_URL`: this
 * endpoint answers `GetSecretValue` (AWS JSON 1.1, as Secrets Manager does, with
 * `ResourceNotFoundException` for an unknown name) and forwards every other request to the emulator.
 */
export async function startAwsEndpoint(emulatorEndpoint: string): Promise<AwsEndpoint> {
  const secrets = new Map<string, string>();
  const target = new URL(emulatorEndpoint);
  const server = createServer(async (req, res) => {
    if (String(req.headers['x-amz-target'] ?? '').startsWith('secretsmanager.')) {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const { SecretId } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { SecretId: string };
      const value = secrets.get(SecretId);
      const type = { 'content-type': 'application/x-amz-json-1.1' };
      if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue' || value === undefined) {
        res.writeHead(400, type).end(
          JSON.stringify({
            __type: 'ResourceNotFoundException',
            message: "Secrets Manager can't find the specified secret.",
          }),
        );
        return;
      }
      res.writeHead(200, type).end(
        JSON.stringify({
          ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${SecretId}-AbCdEf`,
          Name: SecretId,
          SecretString: value,
        }),
      );
      return;
    }
    const forward = request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
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
    secrets,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
