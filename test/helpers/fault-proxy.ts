import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The AWS operation of one request, e.g. `S3.PutObject`, `S3.UploadPart`, `SQS.SendMessageBatch`.
 * S3 operations are told apart by method, path and query (path-style URLs, as the emulator
 * clients use), SQS operations by the JSON protocol's `x-amz-target` header.
 */
export type AwsOperation = `S3.${string}` | `SQS.${string}`;

/** What a rule does to the requests it picks. */
export type FaultAction =
  /** Answer with an AWS error (500 `InternalError` or 503 `SlowDown`/`ServiceUnavailable`). */
  | { readonly kind: 'fail'; readonly status?: 500 | 503 }
  /** Hold the request this long, then forward it. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Destroy the client's socket without an answer (a connection reset). */
  | { readonly kind: 'drop' };

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
  /** Key prefixes the roles may list, where a missing key stays 404 (S3 policies condition ListBucket on `s3:prefix`). @default none */
  readonly listablePrefixes?: readonly string[];
  /**
   * PutObject with `If-None-Match: *` answers 412 PreconditionFailed when the key exists, and with
   * `If-Match: <etag>` when its ETag differs (404 NoSuchKey when it is missing); writes to one key
   * are checked one at a time, so of two concurrent conditional writes one loses. @default true
   */
  readonly conditionalWrites?: boolean;
}

export interface FaultProxyOptions {
  /** Answer as AWS where the emulator differs; see {@link AwsMode}. @default off */
  readonly aws?: AwsMode;
}

/** A fault-injecting HTTP proxy in front of the emulator. */
export interface FaultProxy {
  /** Point SDK clients here instead of at the emulator. */
  readonly endpoint: string;
  /** Requests forwarded or faulted, by operation. */
  readonly calls: ReadonlyMap<AwsOperation, number>;
  /** Requests faulted, by operation. */
  readonly faults: ReadonlyMap<AwsOperation, number>;
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
  return s3Operation(req.method ?? 'GET', new URL(req.url ?? '/', 'http://proxy'));
}

/** An S3 error as S3 writes it (REST XML), the body left out for HEAD as S3 does. */
function sendS3Error(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
) {
  const requestId = randomUUID();
  res.writeHead(status, { 'content-type': 'application/xml', 'x-amz-request-id': requestId });
  if (req.method === 'HEAD') return void res.end();
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
      `<RequestId>${requestId}</RequestId></Error>`,
  );
}

/** The error body each protocol's SDK parser reads, so the client sees a proper AWS error. */
function sendAwsError(res: ServerResponse, op: AwsOperation, status: 500 | 503): void {
  const requestId = randomUUID();
  if (op.startsWith('SQS.')) {
    const code = status === 503 ? 'ServiceUnavailable' : 'InternalError';
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.0',
      'x-amzn-requestid': requestId,
      'x-amzn-query-error': `${code};Receiver`,
    });
    res.end(JSON.stringify({ __type: `com.amazonaws.sqs#${code}`, message: `injected fault on ${op}` }));
    return;
  }
  const code = status === 503 ? 'SlowDown' : 'InternalError';
  res.writeHead(status, { 'content-type': 'application/xml', 'x-amz-request-id': requestId });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
      `<Message>injected fault on ${op}</Message><RequestId>${requestId}</RequestId></Error>`,
  );
}

/**
 * Starts an HTTP proxy on 127.0.0.1 that forwards AWS SDK requests to `target` (the emulator's
 * endpoint) and applies the rules added to it: fail, delay or drop matching operations, at a
 * rate or on given calls, before forwarding or after the emulator has acted.
 */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  const aws = options.aws && {
    missingKeyAccessDenied: options.aws.missingKeyAccessDenied ?? true,
    listablePrefixes: options.aws.listablePrefixes ?? [],
    conditionalWrites: options.aws.conditionalWrites ?? true,
  };
  // Conditional writes to one key, one after the other: the check and the write are one step in S3.
  const keyLocks = new Map<string, Promise<void>>();
  const rules: { rule: FaultRule; seen: number; hits: number }[] = [];
  const calls = new Map<AwsOperation, number>();
  const faults = new Map<AwsOperation, number>();
  const bump = (map: Map<AwsOperation, number>, op: AwsOperation) => map.set(op, (map.get(op) ?? 0) + 1);

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

  const fault = async (req: IncomingMessage, res: ServerResponse, op: AwsOperation, rule: FaultRule) => {
    bump(faults, op);
    if (rule.action.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (rule.action.kind === 'fail') {
      // The SDK expects its request read before the answer, or it may see a reset instead.
      if (!req.readableEnded) {
        req.resume();
        await once(req, 'end').catch(() => undefined);
      }
      sendAwsError(res, op, rule.action.status ?? 500);
    }
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
  const failedCondition = async (req: IncomingMessage, path: string) => {
    const ifNoneMatch = req.headers['if-none-match'];
    const ifMatch = req.headers['if-match'];
    if (ifNoneMatch === undefined && ifMatch === undefined) return undefined;
    const { status, etag } = await head(path);
    if (ifNoneMatch === '*' && status === 200) return { status: 412, code: 'PreconditionFailed' };
    if (ifMatch !== undefined && status === 404) return { status: 404, code: 'NoSuchKey' };
    if (ifMatch !== undefined && ifMatch !== etag) return { status: 412, code: 'PreconditionFailed' };
    return undefined;
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    lose: FaultRule | undefined,
    op: AwsOperation,
  ) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
    if (aws?.conditionalWrites && op === 'S3.PutObject') {
      const before = keyLocks.get(path) ?? Promise.resolve();
      const turn = before.then(async () => {
        const failed = await failedCondition(req, path).catch(() => undefined);
        if (failed) {
          req.resume();
          await once(req, 'end').catch(() => undefined);
          sendS3Error(
            req,
            res,
            failed.status,
            failed.code,
            'At least one of the pre-conditions you specified did not hold',
          );
          return;
        }
        send(req, res, lose, op);
        await once(res, 'close');
      });
      const released = turn.catch(() => undefined);
      keyLocks.set(path, released);
      void released.then(() => {
        if (keyLocks.get(path) === released) keyLocks.delete(path);
      });
      return;
    }
    send(req, res, lose, op);
  };

  const deniesMissing = (op: AwsOperation, path: string) => {
    if (!aws?.missingKeyAccessDenied || (op !== 'S3.GetObject' && op !== 'S3.HeadObject')) return false;
    const key = decodeURIComponent(path).split('/').slice(2).join('/');
    return !aws.listablePrefixes.some((prefix) => key.startsWith(prefix));
  };

  const send = (req: IncomingMessage, res: ServerResponse, lose: FaultRule | undefined, op: AwsOperation) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
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
        if (answer.statusCode === 404 && deniesMissing(op, path)) {
          answer.resume();
          sendS3Error(req, res, 403, 'AccessDenied', 'Access Denied');
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => req.socket.destroy());
    req.pipe(out);
  };

  const server = createServer((req, res) => {
    const op = operationOf(req);
    bump(calls, op);
    const rule = pick(op, decodeURIComponent(new URL(req.url ?? '/', 'http://proxy').pathname));
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (!rule) return forward(req, res, undefined, op);
    if (rule.afterForward) return forward(req, res, rule, op);
    if (rule.action.kind === 'delay') {
      bump(faults, op);
      void sleep(rule.action.ms, undefined, { ref: false }).then(() => forward(req, res, undefined, op));
      return;
    }
    void fault(req, res, op, rule);
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    faults,
    add(rule) {
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
