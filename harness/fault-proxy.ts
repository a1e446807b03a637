import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTROL_TABLE_KEYS } from '../core/control/index.ts';
import {
  type AuthorizationRequest,
  isAllowed,
  LOCAL_ACCOUNT,
  type PolicyStatement,
  queueArn,
  tableArn,
} from './iam-policy.ts';

/**
 * The AWS operation of one request, e.g. `S3.PutObject`, `S3.UploadPart`, `SQS.SendMessageBatch`,
 * `DynamoDB.UpdateItem`. S3 operations are told apart by method, path and query (path-style URLs,
 * as the emulator clients use), SQS and DynamoDB operations by the JSON protocol's `x-amz-target`.
 */
export type AwsOperation = `S3.${string}` | `SQS.${string}` | `DynamoDB.${string}`;

/**
 * The code of a throttling answer. Each service has its own: S3 `SlowDown` (503), SQS
 * `ThrottlingException` (400) or `RequestThrottled` (403), DynamoDB `ThrottlingException` or
 * `ProvisionedThroughputExceededException` (400). The SDK retries each as throttling (its list of
 * throttling error codes, `THROTTLING_ERROR_CODES` in `@smithy/core/retry`).
 */
export type ThrottleCode =
  | 'SlowDown'
  | 'ThrottlingException'
  | 'RequestThrottled'
  | 'ProvisionedThroughputExceededException';

/** What a rule does to the requests it picks. */
export type FaultAction =
  /**
   * Answer with a server error: S3 500 `InternalError` or 503 `SlowDown`, SQS 500 `InternalError`
   * or 503 `ServiceUnavailable`, DynamoDB 500 `InternalServerError` or 503 `ServiceUnavailable`.
   * With `times: N` this is a burst of N failures, then recovery.
   */
  | { readonly kind: 'fail'; readonly status?: 500 | 503 }
  /** Answer as the service throttles. @default code S3 `SlowDown`, SQS and DynamoDB `ThrottlingException` */
  | { readonly kind: 'throttle'; readonly code?: ThrottleCode }
  /**
   * Refuse a conditional write as if another writer had come first: DynamoDB 400
   * `ConditionalCheckFailedException`, S3 412 `PreconditionFailed`.
   */
  | { readonly kind: 'conditionFailed' }
  /** Hold the request this long, then forward it. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Destroy the client's socket without an answer (a connection reset). */
  | { readonly kind: 'drop' }
  /**
   * An SQS `…Batch` call that succeeds for some entries only: the entries at these positions (from
   * 0) are left out of what reaches the emulator and answered in `Failed` with this code, the rest
   * go through. `senderFault` false (the default) is SQS's side, e.g. `InternalError`, and may be
   * retried; true is the caller's, e.g. `ReceiptHandleIsInvalid`. @default code InternalError
   */
  | {
      readonly kind: 'failEntries';
      readonly entries: readonly number[];
      readonly senderFault?: boolean;
      readonly code?: string;
    };

export interface FaultRule {
  /** Operations the rule applies to; all when absent. */
  readonly ops?: readonly AwsOperation[];
  readonly action: FaultAction;
  /** Only requests whose path contains this (an S3 key, a bucket). */
  readonly pathIncludes?: string;
  /** Share of matching requests hit, 0..1. @default 1 */
  readonly rate?: number;
  /** Hit only these matching calls, counted from 1 since the rule was added. */
  readonly nth?: readonly number[];
  /** Stop after this many hits. @default unlimited */
  readonly times?: number;
  /** Apply after the emulator handled the request: the operation took effect, its answer is lost. */
  readonly afterForward?: boolean;
}

/** A rule in force; `hits` counts the requests it faulted, `seen` those it matched. */
export interface ActiveRule {
  readonly rule: FaultRule;
  readonly seen: number;
  readonly hits: number;
  remove(): void;
}

/**
 * Answers as AWS does where the emulator does not ("AWS mode"); each part can be turned off.
 * fauxqs has no IAM and ignores S3 conditional writes, so without this a test cannot see what a
 * deployed function sees.
 */
export interface AwsMode {
  /**
   * GET and HEAD of a missing S3 key answer 403 AccessDenied instead of 404 NoSuchKey, as S3 does
   * for a role without s3:ListBucket on the key's prefix. @default true
   */
  readonly missingKeyAccessDenied?: boolean;
  /** Key prefixes the roles may list, where a missing key stays 404 (S3 policies condition ListBucket on `s3:prefix`); with `roles`, the role decides. @default none */
  readonly listablePrefixes?: readonly string[];
  /**
   * PutObject with `If-None-Match: *` answers 412 PreconditionFailed when the key exists, and with
   * `If-Match: <etag>` when its ETag differs (404 NoSuchKey when it is missing); writes to one key
   * are checked one at a time, so of two concurrent conditional writes one loses. @default true
   */
  readonly conditionalWrites?: boolean;
  /**
   * IAM: the policy statements of each role, by the access key id its callers sign with (AWS tells
   * callers apart by their credentials). A call its role does not allow is refused as the service
   * refuses it (S3 403 `AccessDenied`, SQS 403 `AccessDenied`, DynamoDB 400 `AccessDeniedException`),
   * and so is every call signed with a key not listed here. A role also decides the missing-key
   * answer: 404 only with `s3:ListBucket` on the bucket. Condition keys set: `s3:prefix` of a
   * ListObjects, `dynamodb:LeadingKeys` of a DynamoDB call on items (the partition key values it
   * names: a `Key`, an `Item`, each item of a batch, a Query's key condition; the control table's
   * `pk`, or the index's partition key). @default no IAM
   */
  readonly roles?: Readonly<Record<string, readonly PolicyStatement[]>>;
}

/** A call the caller's role does not allow, as the proxy refused it. */
export interface Denial extends AuthorizationRequest {
  /** The access key id the call was signed with. */
  readonly role: string;
  readonly op: AwsOperation;
}

export interface FaultProxyOptions {
  /** Answer as AWS where the emulator differs; see {@link AwsMode}. @default off */
  readonly aws?: AwsMode;
}

/** A fault-injecting HTTP proxy in front of the emulator (S3, SQS) or dynalite (DynamoDB). */
export interface FaultProxy {
  /** Point SDK clients here instead of at the emulator. */
  readonly endpoint: string;
  /** Requests forwarded or faulted, by operation. */
  readonly calls: ReadonlyMap<AwsOperation, number>;
  /** Requests faulted, by operation. */
  readonly faults: ReadonlyMap<AwsOperation, number>;
  /** Calls refused by IAM (AWS mode with `roles`), in order. */
  readonly denials: readonly Denial[];
  /** Calls let through by IAM, by role. */
  readonly authorized: ReadonlyMap<string, number>;
  add(rule: FaultRule): ActiveRule;
  /** Removes every rule. */
  clear(): void;
  close(): Promise<void>;
}

/** Names the S3 operation of a path-style request (`/bucket/key?query`). */
function s3Operation(method: string, url: URL): AwsOperation {
  const query = url.searchParams;
  const hasKey = url.pathname.split('/').filter(Boolean).length > 1;
  if (!hasKey) {
    if (method === 'GET') return query.has('uploads') ? 'S3.ListMultipartUploads' : 'S3.ListObjects';
    if (method === 'PUT') return 'S3.CreateBucket';
    if (method === 'POST' && query.has('delete')) return 'S3.DeleteObjects';
    return `S3.Bucket${method}`;
  }
  switch (method) {
    case 'PUT':
      if (query.has('partNumber') && query.has('uploadId')) return 'S3.UploadPart';
      return 'S3.PutObject';
    case 'POST':
      if (query.has('uploads')) return 'S3.CreateMultipartUpload';
      if (query.has('uploadId')) return 'S3.CompleteMultipartUpload';
      return 'S3.PostObject';
    case 'DELETE':
      return query.has('uploadId') ? 'S3.AbortMultipartUpload' : 'S3.DeleteObject';
    case 'GET':
      return query.has('uploadId') ? 'S3.ListParts' : 'S3.GetObject';
    case 'HEAD':
      return 'S3.HeadObject';
    default:
      return `S3.${method}`;
  }
}

export function operationOf(req: IncomingMessage): AwsOperation {
  const target = req.headers['x-amz-target'];
  if (typeof target === 'string' && target.startsWith('AmazonSQS.')) return `SQS.${target.slice(10)}`;
  if (typeof target === 'string' && target.startsWith('DynamoDB_')) return `DynamoDB.${target.split('.')[1]}`;
  return s3Operation(req.method ?? 'GET', new URL(req.url ?? '/', 'http://proxy'));
}

/** The access key id and region of a SigV4-signed request (header or presigned URL). */
function signer(req: IncomingMessage, url: URL): { key: string; region: string } {
  const credential =
    /Credential=([^,\s]+)/.exec(req.headers.authorization ?? '')?.[1] ??
    url.searchParams.get('X-Amz-Credential');
  const [key = '', , region = 'us-east-1'] = (credential ?? '').split('/');
  return { key, region };
}

/** The IAM action of each S3 operation that is not named after its own (Service Authorization Reference, Amazon S3). */
const S3_ACTIONS: Record<string, string> = {
  'S3.HeadObject': 's3:GetObject',
  'S3.CreateMultipartUpload': 's3:PutObject',
  'S3.UploadPart': 's3:PutObject',
  'S3.CompleteMultipartUpload': 's3:PutObject',
  'S3.ListParts': 's3:ListMultipartUploadParts',
  'S3.ListObjects': 's3:ListBucket',
  'S3.ListMultipartUploads': 's3:ListBucketMultipartUploads',
};

/** The action and resources IAM checks for one call; `body` is the JSON of an SQS or DynamoDB request. */
function authorizationRequests(
  op: AwsOperation,
  url: URL,
  region: string,
  body: Record<string, unknown>,
): AuthorizationRequest[] {
  const [service, name = ''] = op.split('.') as [string, string];
  if (service === 'S3') {
    const [bucket = '', ...key] = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const prefix = url.searchParams.get('prefix');
    return [
      {
        action: S3_ACTIONS[op] ?? `s3:${name}`,
        resource: `arn:aws:s3:::${bucket}${key.length ? `/${key.join('/')}` : ''}`,
        ...(prefix !== null ? { context: { 's3:prefix': [prefix] } } : {}),
      },
    ];
  }
  if (service === 'SQS') {
    // A batch is authorized as its single action (SQS Developer Guide, "Amazon SQS API permissions").
    const action = `sqs:${name.replace(/Batch$/, '')}`;
    const account = body.QueueOwnerAWSAccountId ?? LOCAL_ACCOUNT;
    const queueUrl =
      typeof body.QueueUrl === 'string' ? body.QueueUrl : `http://sqs/${account}/${body.QueueName}`;
    return [{ action, resource: queueArn(queueUrl, region) }];
  }
  const tables = body.RequestItems ? Object.keys(body.RequestItems) : [String(body.TableName)];
  const index = typeof body.IndexName === 'string' ? `/index/${body.IndexName}` : '';
  return tables.map((table) => {
    const leadingKeys = dynamoLeadingKeys(body, table);
    return {
      action: `dynamodb:${name}`,
      resource: `${tableArn(table, region)}${index}`,
      ...(leadingKeys.length > 0 ? { context: { 'dynamodb:LeadingKeys': leadingKeys } } : {}),
    };
  });
}

type AttributeValues = Record<string, { S?: string } | undefined>;

/**
 * The partition key values a DynamoDB call names in `table` (IAM's `dynamodb:LeadingKeys`): of its
 * `Key` or `Item`, of every request of a batch, of a Query's key condition (whose first equality is
 * on the partition key of the table or the index queried). None for a Scan or a table operation.
 */
function dynamoLeadingKeys(body: Record<string, unknown>, table: string): string[] {
  const partition = (item: unknown) =>
    (item as AttributeValues | undefined)?.[CONTROL_TABLE_KEYS.partitionKey]?.S;
  const values: (string | undefined)[] = [];
  if (body.Key) values.push(partition(body.Key));
  if (body.Item) values.push(partition(body.Item));
  const batch = (body.RequestItems as Record<string, unknown> | undefined)?.[table];
  if (Array.isArray(batch)) {
    for (const request of batch as { PutRequest?: { Item: unknown }; DeleteRequest?: { Key: unknown } }[])
      values.push(partition(request.PutRequest?.Item ?? request.DeleteRequest?.Key));
  } else if (batch) {
    for (const key of (batch as { Keys?: unknown[] }).Keys ?? []) values.push(partition(key));
  }
  if (typeof body.KeyConditionExpression === 'string') {
    const equality = /^\s*\(?\s*[#\w]+\s*=\s*(:\w+)/.exec(body.KeyConditionExpression);
    values.push(equality ? (body.ExpressionAttributeValues as AttributeValues)[equality[1]!]?.S : undefined);
  }
  return [...new Set(values.filter((value) => value !== undefined))];
}

/** An AWS error answer; `type` is the JSON protocol's `__type` when it is not in the service's namespace. */
interface ErrorAnswer {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly type?: string;
}

const SERVER_ERRORS = {
  S3: { 500: 'InternalError', 503: 'SlowDown' },
  SQS: { 500: 'InternalError', 503: 'ServiceUnavailable' },
  DynamoDB: { 500: 'InternalServerError', 503: 'ServiceUnavailable' },
} as const;

const THROTTLING: Record<ThrottleCode, Omit<ErrorAnswer, 'code'>> = {
  SlowDown: { status: 503, message: 'Please reduce your request rate.' },
  ThrottlingException: { status: 400, message: 'Rate exceeded' },
  RequestThrottled: { status: 403, message: 'Request is throttled.' },
  ProvisionedThroughputExceededException: {
    status: 400,
    message: 'The level of configured provisioned throughput for the table was exceeded.',
  },
};

const serviceOf = (op: AwsOperation) => op.split('.')[0] as keyof typeof SERVER_ERRORS;

/** How the service of `op` answers a `fail`, `throttle` or `conditionFailed` rule. */
function faultAnswer(op: AwsOperation, action: FaultAction): ErrorAnswer {
  const service = serviceOf(op);
  if (action.kind === 'throttle') {
    const code = service === 'S3' ? 'SlowDown' : (action.code ?? 'ThrottlingException');
    return { code, ...THROTTLING[code] };
  }
  if (action.kind === 'conditionFailed') {
    return service === 'S3'
      ? {
          status: 412,
          code: 'PreconditionFailed',
          message: 'At least one of the pre-conditions you specified did not hold',
        }
      : { status: 400, code: 'ConditionalCheckFailedException', message: 'The conditional request failed' };
  }
  const status = action.kind === 'fail' ? (action.status ?? 500) : 500;
  return { status, code: SERVER_ERRORS[service][status], message: `injected fault on ${op}` };
}

/** How the service of `op` refuses a call the caller's role does not allow (IAM's message format). */
function denialAnswer(op: AwsOperation, role: string, request: AuthorizationRequest): ErrorAnswer {
  const message =
    `User: arn:aws:sts::${LOCAL_ACCOUNT}:assumed-role/${role}/test is not authorized to perform: ` +
    `${request.action} on resource: ${request.resource} because no identity-based policy allows the ${request.action} action`;
  const service = serviceOf(op);
  if (service === 'S3') return { status: 403, code: 'AccessDenied', message };
  const type = 'com.amazon.coral.service#AccessDeniedException';
  return service === 'SQS'
    ? { status: 403, code: 'AccessDenied', message, type }
    : { status: 400, code: 'AccessDeniedException', message, type };
}

/**
 * Writes an error as each protocol's SDK parser reads it: S3 REST XML (no body for HEAD), SQS JSON
 * 1.0 with the `x-amzn-query-error` header of its query-compatible errors, DynamoDB JSON 1.0.
 */
function sendError(req: IncomingMessage, res: ServerResponse, op: AwsOperation, answer: ErrorAnswer): void {
  const requestId = randomUUID();
  const service = serviceOf(op);
  if (service === 'S3') {
    res.writeHead(answer.status, { 'content-type': 'application/xml', 'x-amz-request-id': requestId });
    if (req.method === 'HEAD') return void res.end();
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${answer.code}</Code><Message>${answer.message}</Message>` +
        `<RequestId>${requestId}</RequestId></Error>`,
    );
    return;
  }
  const namespace = service === 'SQS' ? 'com.amazonaws.sqs' : 'com.amazonaws.dynamodb.v20120810';
  res.writeHead(answer.status, {
    'content-type': 'application/x-amz-json-1.0',
    'x-amzn-requestid': requestId,
    ...(service === 'SQS'
      ? { 'x-amzn-query-error': `${answer.code};${answer.status >= 500 ? 'Receiver' : 'Sender'}` }
      : {}),
  });
  res.end(JSON.stringify({ __type: answer.type ?? `${namespace}#${answer.code}`, message: answer.message }));
}

/** The whole request body (the JSON protocols' requests are small). */
async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Starts an HTTP proxy on 127.0.0.1 that forwards AWS SDK requests to `target` (the emulator's
 * endpoint, or dynalite's) and applies the rules added to it: fail, throttle, refuse a condition,
 * delay or drop matching operations, at a rate or on given calls, before forwarding or after the
 * emulator has acted. With `aws`, it also answers as AWS does where the emulator does not.
 */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  const aws = options.aws && {
    missingKeyAccessDenied: options.aws.missingKeyAccessDenied ?? true,
    listablePrefixes: options.aws.listablePrefixes ?? [],
    conditionalWrites: options.aws.conditionalWrites ?? true,
    roles: options.aws.roles,
  };
  // Conditional writes to one key, one after the other: the check and the write are one step in S3.
  const keyLocks = new Map<string, Promise<void>>();
  const rules: { rule: FaultRule; seen: number; hits: number }[] = [];
  const calls = new Map<AwsOperation, number>();
  const faults = new Map<AwsOperation, number>();
  const denials: Denial[] = [];
  const authorized = new Map<string, number>();
  const bump = <K>(map: Map<K, number>, key: K) => map.set(key, (map.get(key) ?? 0) + 1);

  const pick = (op: AwsOperation, path: string) => {
    for (const entry of rules) {
      const { rule } = entry;
      if (rule.ops && !rule.ops.includes(op)) continue;
      if (rule.pathIncludes && !path.includes(rule.pathIncludes)) continue;
      entry.seen++;
      if (rule.times !== undefined && entry.hits >= rule.times) continue;
      if (rule.nth && !rule.nth.includes(entry.seen)) continue;
      if (Math.random() >= (rule.rate ?? 1)) continue;
      entry.hits++;
      return rule;
    }
    return undefined;
  };

  /** Reads the rest of the request, then answers: the SDK expects that, or it may see a reset instead. */
  const answerError = async (
    req: IncomingMessage,
    res: ServerResponse,
    op: AwsOperation,
    answer: ErrorAnswer,
  ) => {
    if (!req.readableEnded) {
      req.resume();
      await once(req, 'end').catch(() => undefined);
    }
    sendError(req, res, op, answer);
  };

  const fault = async (req: IncomingMessage, res: ServerResponse, op: AwsOperation, rule: FaultRule) => {
    bump(faults, op);
    if (rule.action.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    await answerError(req, res, op, faultAnswer(op, rule.action));
  };

  /** Forwards the batch without the entries `action` fails, and adds them to the answer's `Failed`. */
  const failEntries = async (
    req: IncomingMessage,
    res: ServerResponse,
    call: Call,
    action: Extract<FaultAction, { kind: 'failEntries' }>,
  ) => {
    bump(faults, call.op);
    const input = JSON.parse((call.body ?? (await readBody(req))).toString()) as {
      Entries: { Id: string }[];
    };
    const failing = new Set(action.entries);
    const failed = input.Entries.filter((_, at) => failing.has(at)).map((entry) => ({
      Id: entry.Id,
      SenderFault: action.senderFault ?? false,
      Code: action.code ?? 'InternalError',
      Message: `injected failure of entry ${entry.Id} on ${call.op}`,
    }));
    const kept = input.Entries.filter((_, at) => !failing.has(at));
    let answer: {
      status: number;
      headers: Record<string, string | string[] | undefined>;
      json: Record<string, unknown>;
    } = {
      status: 200,
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID() },
      json: { Successful: [] },
    };
    if (kept.length > 0) {
      const body = Buffer.from(JSON.stringify({ ...input, Entries: kept }));
      answer = await new Promise((resolve, reject) => {
        const out = request(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, 'content-length': String(body.length) },
          },
          (reply) => {
            readBody(reply).then(
              (text) =>
                resolve({
                  status: reply.statusCode ?? 502,
                  headers: reply.headers,
                  json: JSON.parse(text.toString()),
                }),
              reject,
            );
          },
        );
        out.on('error', reject);
        out.end(body);
      });
    }
    const json =
      answer.status === 200
        ? { ...answer.json, Failed: [...((answer.json.Failed as unknown[]) ?? []), ...failed] }
        : answer.json;
    const text = JSON.stringify(json);
    const { 'content-length': _length, 'transfer-encoding': _encoding, ...headers } = answer.headers;
    res.writeHead(answer.status, { ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  /** The object's status and ETag as the emulator has it now. */
  const head = (path: string) =>
    new Promise<{ status: number; etag: string | undefined }>((resolve, reject) => {
      const probe = request(
        { host: upstream.hostname, port: upstream.port, method: 'HEAD', path },
        (answer) => {
          answer.resume();
          resolve({ status: answer.statusCode ?? 0, etag: answer.headers.etag });
        },
      );
      probe.on('error', reject);
      probe.end();
    });

  /** The 412/404 S3 gives a conditional PutObject whose condition fails, or undefined when it holds. */
  const failedCondition = async (req: IncomingMessage, path: string): Promise<ErrorAnswer | undefined> => {
    const ifNoneMatch = req.headers['if-none-match'];
    const ifMatch = req.headers['if-match'];
    if (ifNoneMatch === undefined && ifMatch === undefined) return undefined;
    const { status, etag } = await head(path);
    const conflict = faultAnswer('S3.PutObject', { kind: 'conditionFailed' });
    if (ifNoneMatch === '*' && status === 200) return conflict;
    if (ifMatch !== undefined && status === 404) {
      return { status: 404, code: 'NoSuchKey', message: 'The specified key does not exist.' };
    }
    if (ifMatch !== undefined && ifMatch !== etag) return conflict;
    return undefined;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, call: Call, lose: FaultRule | undefined) => {
    const { op, url } = call;
    if (aws?.conditionalWrites && op === 'S3.PutObject') {
      const path = url.pathname;
      const before = keyLocks.get(path) ?? Promise.resolve();
      const turn = before.then(async () => {
        const failed = await failedCondition(req, path).catch(() => undefined);
        if (failed) return answerError(req, res, op, failed);
        send(req, res, call, lose);
        await once(res, 'close');
      });
      const released = turn.catch(() => undefined);
      keyLocks.set(path, released);
      void released.then(() => {
        if (keyLocks.get(path) === released) keyLocks.delete(path);
      });
      return;
    }
    send(req, res, call, lose);
  };

  /** Whether S3 answers this 404 with 403: the caller may not list the bucket where the key would be. */
  const deniesMissing = ({ op, url, role }: Call) => {
    if (!aws?.missingKeyAccessDenied || (op !== 'S3.GetObject' && op !== 'S3.HeadObject')) return false;
    const [bucket = '', ...key] = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (aws.roles) {
      // GetObject sets no s3:prefix, so a ListBucket grant conditioned on a prefix does not count.
      return !isAllowed(aws.roles[role.key] ?? [], {
        action: 's3:ListBucket',
        resource: `arn:aws:s3:::${bucket}`,
      });
    }
    return !aws.listablePrefixes.some((prefix) => key.join('/').startsWith(prefix));
  };

  const send = (req: IncomingMessage, res: ServerResponse, call: Call, lose: FaultRule | undefined) => {
    const { op } = call;
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      async (answer) => {
        if (lose && lose.action.kind !== 'delay') {
          answer.resume();
          answer.once('end', () => void fault(req, res, op, lose));
          return;
        }
        if (lose?.action.kind === 'delay') {
          bump(faults, op);
          answer.pause();
          await sleep(lose.action.ms, undefined, { ref: false });
        }
        if (answer.statusCode === 404 && deniesMissing(call)) {
          answer.resume();
          sendError(req, res, op, { status: 403, code: 'AccessDenied', message: 'Access Denied' });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => req.socket.destroy());
    if (call.body) out.end(call.body);
    else req.pipe(out);
  };

  /** The first of the call's authorization requests its role does not allow. */
  const denied = (call: Call): AuthorizationRequest | undefined => {
    if (!aws?.roles) return undefined;
    const json = call.body?.length ? (JSON.parse(call.body.toString()) as Record<string, unknown>) : {};
    const statements = aws.roles[call.role.key] ?? [];
    return authorizationRequests(call.op, call.url, call.role.region, json).find(
      (request) => !isAllowed(statements, request),
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse, call: Call) => {
    const { op } = call;
    const refused = denied(call);
    if (refused) {
      denials.push({ role: call.role.key, op, ...refused });
      return void answerError(req, res, op, denialAnswer(op, call.role.key, refused));
    }
    if (aws?.roles) bump(authorized, call.role.key);
    const rule = pick(op, decodeURIComponent(call.url.pathname));
    if (!rule) return forward(req, res, call, undefined);
    if (rule.afterForward) return forward(req, res, call, rule);
    if (rule.action.kind === 'failEntries') {
      return void failEntries(req, res, call, rule.action).catch(() => req.socket.destroy());
    }
    if (rule.action.kind === 'delay') {
      bump(faults, op);
      void sleep(rule.action.ms, undefined, { ref: false }).then(() => forward(req, res, call, undefined));
      return;
    }
    void fault(req, res, op, rule);
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const op = operationOf(req);
    bump(calls, op);
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const call = { op, url, role: signer(req, url) };
    // IAM needs the JSON protocols' body (the queue, the table): read it first, then forward it whole.
    if (!aws?.roles || op.startsWith('S3.')) return handle(req, res, call);
    readBody(req).then(
      (body) => handle(req, res, { ...call, body }),
      () => req.socket.destroy(),
    );
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    faults,
    denials,
    authorized,
    add(rule) {
      if (rule.action.kind === 'conditionFailed' && !rule.ops?.every((op) => !op.startsWith('SQS.'))) {
        throw new Error('conditionFailed applies to S3 and DynamoDB operations only: name them in ops');
      }
      if (rule.action.kind === 'failEntries' && !rule.ops?.every((op) => /^SQS\..+Batch$/.test(op))) {
        throw new Error('failEntries applies to SQS batch operations only: name them in ops');
      }
      const entry = { rule, seen: 0, hits: 0 };
      rules.push(entry);
      return {
        rule,
        get seen() {
          return entry.seen;
        },
        get hits() {
          return entry.hits;
        },
        remove() {
          const at = rules.indexOf(entry);
          if (at !== -1) rules.splice(at, 1);
        },
      };
    },
    clear() {
      rules.length = 0;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** One request as the proxy handles it: its operation, URL, signer and (JSON protocols with IAM) body. */
interface Call {
  readonly op: AwsOperation;
  readonly url: URL;
  readonly role: { readonly key: string; readonly region: string };
  readonly body?: Buffer;
}
