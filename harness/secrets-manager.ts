import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/** One stored secret, as Secrets Manager keeps it. */
interface StoredSecret {
  value: string;
  arn: string;
  versionId: string;
  token: string | undefined;
  tags: { Key: string; Value: string }[];
  deletionDate: number | null;
}

/** A request the service received: its operation (`CreateSecret`, …) and JSON body. */
export interface SecretsManagerRequest {
  readonly operation: string;
  readonly body: Record<string, unknown>;
}

/**
 * The part of AWS Secrets Manager mailbridge calls (CreateSecret, GetSecretValue, DeleteSecret),
 * over its AWS JSON 1.1 protocol, answering as the service does: `ResourceExistsException` for a
 * name taken, `ResourceNotFoundException` for an unknown one, `InvalidRequestException` for a secret
 * scheduled for deletion (every operation, creating the name again included), and a retried
 * CreateSecret with the same ClientRequestToken and value accepted as the same request.
 */
export interface SecretsManagerService {
  /** Live secrets: name → value (a secret scheduled for deletion is not here). */
  readonly secrets: ReadonlyMap<string, string>;
  /** Names scheduled for deletion → their recovery window in days. */
  readonly deleted: ReadonlyMap<string, number>;
  readonly requests: readonly SecretsManagerRequest[];
  /** Stores a secret as if created beforehand. */
  set(name: string, value: string): void;
  /** The next `count` calls of `operation` fail with this AWS error. */
  failNext(
    operation: string,
    error: { type: string; message: string; status?: number },
    count?: number,
  ): void;
  /** Answers a request whose `x-amz-target` starts with `secretsmanager.`. */
  handle(request: IncomingMessage, response: ServerResponse): Promise<void>;
}

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';

export function createSecretsManager(): SecretsManagerService {
  const stored = new Map<string, StoredSecret>();
  const requests: SecretsManagerRequest[] = [];
  const failures: { operation: string; type: string; message: string; status: number }[] = [];
  let serial = 0;

  const arnOf = (name: string) =>
    `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-${(++serial).toString(36).padStart(6, 'a')}`;
  const find = (id: string) =>
    [...stored.entries()].find(([name, secret]) => name === id || secret.arn === id);
  const markedForDeletion = {
    type: 'InvalidRequestException',
    message: "You can't perform this operation on the secret because it was marked for deletion.",
  };
  const notFound = {
    type: 'ResourceNotFoundException',
    message: "Secrets Manager can't find the specified secret.",
  };

  type Answer = { status: number; body: unknown };
  const error = (e: { type: string; message: string; status?: number }): Answer => ({
    status: e.status ?? 400,
    body: { __type: e.type, Message: e.message },
  });

  const operations: Record<string, (body: Record<string, unknown>) => Answer> = {
    CreateSecret(body) {
      const name = String(body.Name);
      const existing = stored.get(name);
      if (existing?.deletionDate !== null && existing !== undefined) {
        return error({
          type: 'InvalidRequestException',
          message:
            "You can't create this secret because a secret with this name is already scheduled for deletion.",
        });
      }
      if (existing) {
        if (body.ClientRequestToken !== undefined && existing.token === body.ClientRequestToken) {
          if (existing.value !== body.SecretString) {
            return error({
              type: 'ResourceExistsException',
              message: 'You can’t modify an existing version, you can only create new versions.',
            });
          }
          return { status: 200, body: { ARN: existing.arn, Name: name, VersionId: existing.versionId } };
        }
        return error({
          type: 'ResourceExistsException',
          message: `The operation failed because the secret ${name} already exists.`,
        });
      }
      const secret: StoredSecret = {
        value: String(body.SecretString),
        arn: arnOf(name),
        versionId: String(body.ClientRequestToken ?? `v${serial}`),
        token: body.ClientRequestToken as string | undefined,
        tags: (body.Tags as StoredSecret['tags'] | undefined) ?? [],
        deletionDate: null,
      };
      stored.set(name, secret);
      return { status: 200, body: { ARN: secret.arn, Name: name, VersionId: secret.versionId } };
    },
    GetSecretValue(body) {
      const found = find(String(body.SecretId));
      if (!found) return error(notFound);
      const [name, secret] = found;
      if (secret.deletionDate !== null) return error(markedForDeletion);
      return {
        status: 200,
        body: {
          ARN: secret.arn,
          Name: name,
          VersionId: secret.versionId,
          SecretString: secret.value,
          VersionStages: ['AWSCURRENT'],
          CreatedDate: 1_796_000_000,
        },
      };
    },
    DeleteSecret(body) {
      const found = find(String(body.SecretId));
      if (!found) return error(notFound);
      const [name, secret] = found;
      if (secret.deletionDate !== null) return error(markedForDeletion);
      const days = body.ForceDeleteWithoutRecovery === true ? 0 : Number(body.RecoveryWindowInDays ?? 30);
      if (days !== 0 && (days < 7 || days > 30)) {
        return error({
          type: 'InvalidParameterException',
          message: 'RecoveryWindowInDays value must be between 7 and 30 days (inclusive).',
        });
      }
      if (days === 0) stored.delete(name);
      else secret.deletionDate = Math.floor(Date.now() / 1000) + days * 86400;
      return { status: 200, body: { ARN: secret.arn, Name: name, DeletionDate: secret.deletionDate ?? 0 } };
    },
  };

  return {
    get secrets() {
      return new Map(
        [...stored].filter(([, secret]) => secret.deletionDate === null).map(([name, s]) => [name, s.value]),
      );
    },
    get deleted() {
      return new Map(
        [...stored]
          .filter(([, secret]) => secret.deletionDate !== null)
          .map(([name, s]) => [name, Math.round((s.deletionDate! - Date.now() / 1000) / 86400)]),
      );
    },
    requests,
    set(name, value) {
      operations.CreateSecret!({ Name: name, SecretString: value });
    },
    failNext(operation, e, count = 1) {
      for (let i = 0; i < count; i++) failures.push({ operation, status: 400, ...e });
    },
    async handle(request, response) {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      const operation = String(request.headers['x-amz-target'] ?? '').replace(/^secretsmanager\./, '');
      requests.push({ operation, body });
      const failure = failures.findIndex((f) => f.operation === operation);
      const answer =
        failure >= 0
          ? error(failures.splice(failure, 1)[0]!)
          : (operations[operation]?.(body) ??
            error({ type: 'UnknownOperationException', message: `no operation ${operation}` }));
      const type = (answer.body as { __type?: string }).__type;
      response
        .writeHead(answer.status, {
          'content-type': 'application/x-amz-json-1.1',
          ...(type ? { 'x-amzn-errortype': type } : {}),
        })
        .end(JSON.stringify(answer.body));
    },
  };
}

/** An SDK client for a local Secrets Manager at `url`, with test credentials and no SDK retries. */
export function secretsManagerClient(url: string): SecretsManagerClient {
  return new SecretsManagerClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
}

/** {@link createSecretsManager} served on 127.0.0.1 (a free port): point the SDK's `endpoint` at `url`. */
export async function startSecretsManager(): Promise<
  SecretsManagerService & { url: string; close(): Promise<void> }
> {
  const service = createSecretsManager();
  const server = createServer((request, response) => void service.handle(request, response));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  // Added beside the service's own getters, which Object.assign would read once and freeze.
  return Object.defineProperties(service, {
    url: { value: url },
    close: { value: close },
  }) as SecretsManagerService & {
    url: string;
    close(): Promise<void>;
  };
}
