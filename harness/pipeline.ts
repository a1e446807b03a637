import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import type { ControlStore } from '../core/control/index.ts';
import {
  type Config,
  type ConfigInput,
  createLogger,
  createMetrics,
  type InboundEvent,
  type Metrics,
  newMessageId,
  parseConfig,
  rawObjectKey,
} from '../core/index.ts';
import { emulatorClients, type Poller, startLocalFunctions } from '../dev/index.ts';
import type { DnsResolver } from '../functions/index.ts';
import { generateSelfSigned, type RunningListener, startListener } from '../listener/index.ts';
import { noDns } from './dns-zone.ts';
import { startTestEmulator, type TestEmulator } from './emulator.ts';
import { type AwsMode, type FaultProxy, startFaultProxy } from './fault-proxy.ts';

type RouteInput = ConfigInput['routes'][number];

export interface PipelineOptions {
  /** Routes of the config; their endpoints are usually webhook receiver URLs. */
  readonly routes: readonly RouteInput[];
  readonly domains?: readonly string[];
  readonly limits?: ConfigInput['limits'];
  /** Emulator SQLite folder. @default in memory */
  readonly dataDir?: string;
  /** Long-poll wait of both pollers. @default 1 */
  readonly pollWaitSeconds?: number;
  /**
   * Visibility of a parse record: how long before a failed one is tried again. It must exceed a
   * batch's processing time, as Lambda's (6 × the function timeout) does, or records still being
   * processed come back, count receives and end in the DLQ. @default 30
   */
  readonly inboundVisibilitySeconds?: number;
  /** Visibility of a delivery record whose try threw (not a scheduled retry). @default 5 */
  readonly deliveryVisibilitySeconds?: number;
  /** Batches in flight per poller. @default 2 */
  readonly concurrency?: number;
  /** How long the pollers gather records into one batch. @default 0 */
  readonly batchingWindowMs?: number;
  /**
   * The proxy answers as AWS does where the emulator differs; a function of the emulator when it
   * needs its resources (roles' ARNs). Each part signs as its role: `listener`, `parse`, `deliver`.
   * @default conditional writes only
   */
  readonly aws?: AwsMode | ((emulator: TestEmulator) => AwsMode);
  /** DNS of the parse function. @default every name unknown, at once */
  readonly resolver?: DnsResolver;
  /** The control plane's store, for parse and deliver (API routes, message log, duplicate markers). @default none */
  readonly controlStore?: ControlStore;
  /** The config's content scanners and DNS blocklists. @default both off */
  readonly filtering?: Pick<ConfigInput, 'scanners' | 'dnsbl'>;
  /** DNS of the listener (DNSBL, SPF, DMARC). @default the `resolver` of parse */
  readonly listenerResolver?: DnsResolver;
  /** The listener's metrics. @default createMetrics('listener') */
  readonly listenerMetrics?: Metrics;
}

/** A message to put on the inbound queue as the listener would have: stored raw, then its event. */
export interface InjectedMessage {
  readonly raw: Buffer | string;
  readonly rcptTo: readonly string[];
  readonly mailFrom?: string;
  /** What the listener's filtering decided, as it queues it. @default none: no filtering ran */
  readonly filtering?: InboundEvent['filtering'];
}

/**
 * The whole pipeline in this process, as the local runtime composes it, but with every AWS call of
 * the listener and both functions going through a {@link FaultProxy} in front of the emulator, the
 * routes of the test, and a listener that can be stopped and started again on the same port.
 */
export interface Pipeline {
  readonly emulator: TestEmulator;
  readonly proxy: FaultProxy;
  readonly config: Config;
  /** Clients through the proxy, signing as the listener (each part has its own). */
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** The MX-mode SMTP port; the same across listener restarts. */
  readonly smtpPort: number;
  readonly pollers: { readonly inbound: Poller; readonly delivery: Poller };
  /**
   * Stores each message's raw object and sends their InboundEvents in one SendMessageBatch, so that
   * (with a batching window) the parse function gets them in one batch. At most 10.
   */
  injectBatch(messages: readonly InjectedMessage[]): Promise<InboundEvent[]>;
  /** Graceful stop of the listener (see `RunningListener.close`). */
  stopListener(): Promise<void>;
  startListener(): Promise<void>;
  close(): Promise<void>;
}

/** A port nothing listens on now (bound on 127.0.0.1, then released). */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startPipeline(options: PipelineOptions): Promise<Pipeline> {
  const emulator = await startTestEmulator(options.dataDir ? { dataDir: options.dataDir } : {});
  // S3 honours conditional writes, the emulator does not: the proxy always does, as S3 would.
  const aws = typeof options.aws === 'function' ? options.aws(emulator) : options.aws;
  const proxy = await startFaultProxy(emulator.emulator.endpoint, {
    aws: aws ?? { missingKeyAccessDenied: false, conditionalWrites: true },
  });
  // Each part signs as its own role, as each has one in AWS: the proxy's IAM tells them apart by key.
  const { s3, sqs } = emulatorClients(proxy.endpoint, 'listener');
  const functionClients = {
    parse: emulatorClients(proxy.endpoint, 'parse'),
    deliver: emulatorClients(proxy.endpoint, 'deliver'),
  };
  const smtpPort = await freePort();
  const config = parseConfig(
    {
      hostname: 'mx.mailbridge.test',
      domains: [...(options.domains ?? ['example.test'])],
      routes: [...options.routes],
      listeners: [{ host: '127.0.0.1', port: smtpPort, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      ...(options.limits ? { limits: options.limits } : {}),
      ...options.filtering,
    },
    { source: 'test', runtime: 'local' },
  );
  const { resources } = emulator;
  const pollers = await startLocalFunctions({
    ...functionClients.parse,
    clients: functionClients,
    resources,
    config,
    // Config and API routes alike: local runs keep the values in the references.
    secrets: async (route) => route.secret.map((ref) => ('value' in ref ? ref.value : '')),
    ...(options.controlStore ? { controlStore: options.controlStore } : {}),
    resolver: options.resolver ?? noDns,
    waitTimeSeconds: options.pollWaitSeconds ?? 1,
    concurrency: options.concurrency ?? 2,
    ...(options.batchingWindowMs !== undefined ? { batchingWindowMs: options.batchingWindowMs } : {}),
    visibilityTimeoutSeconds: {
      parse: options.inboundVisibilitySeconds ?? 30,
      deliver: options.deliveryVisibilitySeconds ?? 5,
    },
  });
  const tls = await generateSelfSigned(config.hostname);
  let listener: RunningListener | undefined;

  const pipeline: Pipeline = {
    emulator,
    proxy,
    config,
    s3,
    sqs,
    smtpPort,
    pollers,
    async injectBatch(messages) {
      const events = await Promise.all(
        messages.map(async (message): Promise<InboundEvent> => {
          const bytes = Buffer.from(message.raw);
          const receivedAt = new Date();
          const id = newMessageId(receivedAt.getTime());
          const key = rawObjectKey(id, receivedAt);
          await new Upload({
            client: emulator.s3,
            params: { Bucket: resources.bucket, Key: key, Body: bytes },
          }).done();
          return {
            version: 1,
            id,
            receivedAt: receivedAt.toISOString(),
            raw: {
              bucket: resources.bucket,
              key,
              size: bytes.length,
              sha256: createHash('sha256').update(bytes).digest('hex'),
            },
            envelope: {
              mailFrom: message.mailFrom ?? 'sender@sender.test',
              rcptTo: [...message.rcptTo],
              helo: 'client.sender.test',
              remoteAddress: '192.0.2.10',
              remotePort: 40000,
              localPort: smtpPort,
              tls: null,
              authUser: null,
            },
            ...(message.filtering ? { filtering: message.filtering } : {}),
          };
        }),
      );
      await emulator.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: resources.inboundQueueUrl,
          Entries: events.map((event, index) => ({ Id: String(index), MessageBody: JSON.stringify(event) })),
        }),
      );
      return events;
    },
    async startListener() {
      listener = await startListener({
        config,
        s3,
        sqs,
        bucket: resources.bucket,
        inboundQueueUrl: resources.inboundQueueUrl,
        tls,
        authUsers: new Map(),
        logger: createLogger('listener'),
        metrics: options.listenerMetrics ?? createMetrics('listener'),
        resolver: options.listenerResolver ?? options.resolver ?? noDns,
      });
    },
    async stopListener() {
      await listener?.close();
      listener = undefined;
    },
    async close() {
      await pipeline.stopListener();
      await pollers.stop();
      for (const clients of [{ s3, sqs }, functionClients.parse, functionClients.deliver]) {
        clients.s3.destroy();
        clients.sqs.destroy();
      }
      await proxy.close();
      await emulator.close();
    },
  };
  await pipeline.startListener();
  return pipeline;
}
