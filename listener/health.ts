import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { AbortMultipartUploadCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { classifyS3Error } from '../core/aws/index.ts';
import { type Logger, READINESS_PROBE_KEY } from '../core/index.ts';
import { readProxyV2Header } from './proxy.ts';

/** Whether the storage path answers: the parts that do not, by name (`s3`, `sqs`). */
export interface Readiness {
  readonly failing: readonly string[];
}

export interface HealthServerOptions {
  readonly host: string;
  readonly port: number;
  /** True once shutdown began: `/healthz` answers 503 `draining`. */
  readonly isDraining: () => boolean;
  /** @default always ready */
  readonly readiness?: () => Promise<Readiness>;
  /**
   * Connections may start with a PROXY v2 header: once a target group has proxy protocol on, the
   * NLB sends it on health-check connections too. The container's own check sends none.
   */
  readonly proxyProtocol: boolean;
  /** How long a connection may take to send its PROXY header. */
  readonly headerTimeoutMs: number;
}

export interface HealthServer {
  /** The bound port, also when the options asked for port 0. */
  readonly port: number;
  /** Stops accepting and closes every open connection. */
  close(): Promise<void>;
}

const json = { 'content-type': 'application/json', 'cache-control': 'no-store' };

/**
 * `GET /healthz` for the load balancer: 200 `{"status":"ok"}` while serving; 503 `draining` once
 * shutdown began, so the NLB stops sending new connections while open sessions finish; 503
 * `unready` while S3 or SQS cannot be reached, so a task that could only answer 451 gets no mail.
 * `GET /livez` answers 200 as long as the process serves HTTP: the container health check, which
 * must not kill every task while S3 has an outage. An HTTP check, unlike a TCP probe, opens no SMTP
 * session.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const http = createHttpServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, json).end('{"status":"method not allowed"}');
    } else if (path === '/livez') {
      response.writeHead(200, json).end('{"status":"ok"}');
    } else if (path !== '/healthz') {
      response.writeHead(404, json).end('{"status":"not found"}');
    } else if (options.isDraining()) {
      response.writeHead(503, json).end('{"status":"draining"}');
    } else {
      void (options.readiness?.() ?? Promise.resolve({ failing: [] })).then(({ failing }) => {
        const body = failing.length > 0 ? { status: 'unready', failing } : { status: 'ok' };
        response.writeHead(failing.length > 0 ? 503 : 200, json).end(JSON.stringify(body));
      });
    }
  });
  // Health checks come every few seconds; idle keep-alive sockets must not delay shutdown.
  http.keepAliveTimeout = 1000;
  // Our own accepting server hands sockets to the HTTP server, as the SMTP listeners do: the place
  // to take a PROXY header off, and a list of sockets to close at shutdown.
  const sockets = new Set<Socket>();
  const front = createServer(async (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (options.proxyProtocol && (await readProxyV2Header(socket, options.headerTimeoutMs)) === false) return;
    http.emit('connection', socket);
    socket.resume();
  });
  front.listen(options.port, options.host);
  await once(front, 'listening');
  const address = front.address();
  return {
    port: address && typeof address === 'object' ? address.port : 0,
    close() {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      return closed;
    },
  };
}

export interface StorageReadinessOptions {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly bucket: string;
  readonly inboundQueueUrl: string;
  readonly logger: Logger;
  /** A result is reused this long, so a check every few seconds from every target group costs little. @default 5000 */
  readonly cacheMs?: number;
  /** A probe slower than this counts as a failure (the NLB waits 5 s for an answer). @default 2000 */
  readonly timeoutMs?: number;
}

// A multipart upload that never exists: aborting it is free (a DELETE request), writes nothing, and
// is allowed by the listener's own grant on raw/ (s3:AbortMultipartUpload), so S3 answers
// NoSuchUpload when the bucket, the credentials and the permission all work.
const PROBE_UPLOAD_ID = 'readiness-probe';

/**
 * Readiness of the storage path the listener needs before it may answer 250: the bucket accepts
 * its requests and the inbound queue answers. Cached for `cacheMs`; concurrent checks share one
 * probe. A change of state is logged once.
 */
export function storageReadiness(options: StorageReadinessOptions): () => Promise<Readiness> {
  const cacheMs = options.cacheMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 2000;
  const probes: Record<string, (abortSignal: AbortSignal) => Promise<unknown>> = {
    s3: (abortSignal) =>
      options.s3
        .send(
          new AbortMultipartUploadCommand({
            Bucket: options.bucket,
            Key: READINESS_PROBE_KEY,
            UploadId: PROBE_UPLOAD_ID,
          }),
          { abortSignal },
        )
        .catch((error: unknown) => {
          if (classifyS3Error(error) !== 'missing') throw error;
        }),
    sqs: (abortSignal) =>
      options.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: options.inboundQueueUrl, AttributeNames: ['QueueArn'] }),
        { abortSignal },
      ),
  };
  let last: { at: number; result: Promise<Readiness> } | undefined;
  let previous: readonly string[] = [];
  const check = async (): Promise<Readiness> => {
    const outcomes = await Promise.allSettled(
      Object.values(probes).map((probe) => probe(AbortSignal.timeout(timeoutMs))),
    );
    const names = Object.keys(probes);
    const failing = names.filter((_, i) => outcomes[i]!.status === 'rejected');
    if (failing.join() !== previous.join()) {
      if (failing.length > 0) {
        const errors = Object.fromEntries(
          outcomes.flatMap((outcome, i) =>
            outcome.status === 'rejected' ? [[names[i]!, String((outcome.reason as Error).message)]] : [],
          ),
        );
        options.logger.warn('storage unreachable: /healthz answers 503', { failing, errors });
      } else {
        options.logger.info('storage reachable again: /healthz answers 200');
      }
      previous = failing;
    }
    return { failing };
  };
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= cacheMs) last = { at: now, result: check() };
    return last.result;
  };
}
