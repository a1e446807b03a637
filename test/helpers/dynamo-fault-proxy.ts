import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How DynamoDB itself answers (JSON 1.0 protocol): the SDK turns each into its named exception. */
const ANSWERS = {
  throttle: {
    status: 400,
    type: 'com.amazonaws.dynamodb.v20120810#ThrottlingException',
    message: 'Rate of requests exceeds the allowed throughput.',
  },
  internal: {
    status: 500,
    type: 'com.amazonaws.dynamodb.v20120810#InternalServerError',
    message: 'Internal server error',
  },
  conditional: {
    status: 400,
    type: 'com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException',
    message: 'The conditional request failed',
  },
} as const;

export interface DynamoFault {
  /** Operation (x-amz-target suffix, e.g. `UpdateItem`); every operation when absent. */
  readonly op?: string;
  /** An AWS-shaped error, or `drop`: the socket is destroyed with no answer. */
  readonly answer: keyof typeof ANSWERS | 'drop';
  /** Fault this many requests, then forward again. @default unlimited */
  times?: number;
}

export interface DynamoFaultProxy {
  readonly endpoint: string;
  /** Requests seen, by operation. */
  readonly calls: Map<string, number>;
  /** The fault in force; null forwards everything. */
  fault: DynamoFault | null;
  close(): Promise<void>;
}

/**
 * A proxy in front of dynalite that answers as DynamoDB does where dynalite cannot be made to:
 * throttling, internal errors, lost connections, or a ConditionalCheckFailed for a write that
 * dynalite would have let through (a concurrent writer AWS would have seen).
 */
export async function startDynamoFaultProxy(target: string): Promise<DynamoFaultProxy> {
  const upstream = new URL(target);
  const proxy: DynamoFaultProxy = {
    endpoint: '',
    calls: new Map(),
    fault: null,
    close: async () => undefined,
  };
  const server = createServer((req, res) => {
    const op = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
    proxy.calls.set(op, (proxy.calls.get(op) ?? 0) + 1);
    const fault = proxy.fault;
    req.on('error', () => undefined);
    if (fault && (!fault.op || fault.op === op) && (fault.times ?? 1) > 0) {
      if (fault.times !== undefined) fault.times--;
      req.resume();
      if (fault.answer === 'drop') {
        req.socket.destroy();
        return;
      }
      const { status, type, message } = ANSWERS[fault.answer];
      req.once('end', () => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': 'fault' });
        res.end(JSON.stringify({ __type: type, message }));
      });
      return;
    }
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => req.socket.destroy());
    req.pipe(out);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}
