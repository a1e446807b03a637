/**
 * One server under test in a process of its own: `sink` (bare smtp-server, DATA discarded, the
 * reference), `listener` (mailbridge's durable path), `naive` (the naive durable sink) or
 * `pipeline` (listener, parse and deliver behind Lambda-style pollers: the end-to-end run).
 * Usage: `server-process.ts <kind> <json options>`; replies with the SMTP port once listening.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { createLogger, createMetrics, parseConfig } from '../core/index.ts';
import { emulatorClients, startLocalFunctions } from '../dev/index.ts';
import { noDns } from '../harness/dns-zone.ts';
import { generateSelfSigned, startListener, storageClients } from '../listener/index.ts';
import { serve } from './ipc.ts';
import { naiveDurableSink } from './naive-sink.ts';

export type ServerKind = 'sink' | 'listener' | 'naive' | 'pipeline';

export interface ServerOptions {
  readonly endpoint?: string;
  readonly bucket?: string;
  readonly inboundQueueUrl?: string;
  readonly deliveryQueueUrl?: string;
  readonly deliveryDlqUrl?: string;
  readonly inboundDlqUrl?: string;
  /** Where the pipeline delivers webhooks. */
  readonly webhookUrl?: string;
  /** The pipeline's retry schedule, seconds. */
  readonly retrySchedule?: number[];
  /** The listener's `limits`, replacing the throughput bench's (no per-address limits). */
  readonly limits?: Record<string, unknown>;
}

const SECRET = 'whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQ=';
const [kind, json] = process.argv.slice(2) as [ServerKind, string];
const options = JSON.parse(json ?? '{}') as ServerOptions;
const tls = await generateSelfSigned('mx.bench.test');

const required = (value: string | undefined, name: string): string => {
  if (!value) throw new Error(`${kind} needs ${name}`);
  return value;
};

async function listenSmtp(server: SMTPServer): Promise<number> {
  server.on('error', () => {});
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  return (server.server.address() as AddressInfo).port;
}

async function start(): Promise<{ port: number; close: () => Promise<void> }> {
  if (kind === 'sink') {
    const sink = new SMTPServer({
      key: tls.key,
      cert: tls.cert,
      authOptional: true,
      disabledCommands: ['AUTH'],
      disableReverseLookup: true,
      logger: false,
      size: 64 * 1024 * 1024,
      onData(stream, _session, callback) {
        stream.on('end', () => callback(null, 'discarded'));
        stream.resume();
      },
    });
    return { port: await listenSmtp(sink), close: () => new Promise((resolve) => sink.close(resolve)) };
  }
  const endpoint = required(options.endpoint, 'endpoint');
  const bucket = required(options.bucket, 'bucket');
  const inboundQueueUrl = required(options.inboundQueueUrl, 'inboundQueueUrl');
  if (kind === 'naive') {
    const naive = naiveDurableSink({
      endpoint,
      bucket,
      queueUrl: inboundQueueUrl,
      key: tls.key,
      cert: tls.cert,
    });
    return { port: await listenSmtp(naive), close: () => new Promise((resolve) => naive.close(resolve)) };
  }
  const config = parseConfig(
    {
      hostname: 'mx.bench.test',
      domains: ['example.test'],
      routes: [
        {
          id: 'bench',
          match: ['*@example.test'],
          endpoints: [options.webhookUrl ?? 'http://127.0.0.1:9/hook'],
          secret: { value: SECRET },
          ...(options.retrySchedule ? { retrySchedule: options.retrySchedule } : {}),
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      limits: options.limits ?? {
        maxConnections: 5000,
        maxConnectionsPerIp: 5000,
        maxConnectionsPerNetwork: 5000,
        maxMessageBytes: 64 * 1024 * 1024,
      },
    },
    { source: 'bench', runtime: 'local' },
  );
  const { s3, sqs } = emulatorClients(endpoint);
  const closers: (() => Promise<void>)[] = [];
  if (kind === 'pipeline') {
    const pollers = await startLocalFunctions({
      s3,
      sqs,
      resources: {
        bucket,
        inboundQueueUrl,
        deliveryQueueUrl: required(options.deliveryQueueUrl, 'deliveryQueueUrl'),
        deliveryDlqUrl: required(options.deliveryDlqUrl, 'deliveryDlqUrl'),
        inboundDlqUrl: required(options.inboundDlqUrl, 'inboundDlqUrl'),
      },
      config,
      secrets: async () => [SECRET],
      resolver: noDns,
      waitTimeSeconds: 1,
    });
    closers.push(() => pollers.stop());
  }
  // The listener's own clients, with the timeouts listener/main.ts gives them in production.
  const storage = storageClients(config.limits, {
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const listener = await startListener({
    config,
    ...storage,
    bucket,
    inboundQueueUrl,
    tls,
    authUsers: new Map(),
    logger: createLogger('listener'),
    metrics: createMetrics('listener'),
  });
  closers.unshift(() => listener.close());
  return {
    port: listener.listeners[0]!.port,
    close: async () => {
      for (const close of closers) await close();
      for (const client of [s3, sqs, storage.s3, storage.sqs]) client.destroy();
    },
  };
}

const server = await start();
serve(
  {
    close: () => server.close(),
    memory: () => process.memoryUsage(),
    liveMemory: () => {
      globalThis.gc?.();
      return process.memoryUsage();
    },
  },
  { port: server.port },
);
