/**
 * The measured inputs of the cost model, in a process of its own: 10 KB messages through the real
 * listener, parse and deliver (Lambda-style pollers) on the emulator, with the control plane's
 * store (message log, duplicate markers) on the embedded DynamoDB-compatible one, every AWS request
 * counted by a proxy in front of it, every DynamoDB write unit counted, every byte the parts log
 * counted, and DNS answers delayed as a real resolver would. Low volume: one message at a time, so each batch holds one record (as the SQS
 * trigger does at a steady 1 million a month); high volume: a burst, so batches fill.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { Context, SQSEvent } from 'aws-lambda';
import { createTransport } from 'nodemailer';
import type { EmulatorInfo } from './servers.ts';

// The parts' JSON log lines and EMF metrics are what CloudWatch Logs ingests: turn them on and
// count them instead of printing them. Set before the modules that read them are imported.
process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
process.env.POWERTOOLS_METRICS_DISABLED = 'false';
process.env.POWERTOOLS_METRICS_NAMESPACE = 'mailbridge';
let logBytes = 0;
process.stdout.write = ((chunk: string | Uint8Array) => {
  logBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
  return true;
}) as typeof process.stdout.write;

const { createLogger, createMetrics, parseConfig, QUEUE_SETTINGS } = await import('../core/index.ts');
const { createLocalHandlers, emulatorClients, startPoller } = await import('../dev/index.ts');
const { generateSelfSigned, startListener } = await import('../listener/index.ts');
const { createDnsZone } = await import('../harness/dns-zone.ts');
const { serve } = await import('./ipc.ts');
const { startEmulatorProcess } = await import('./servers.ts');
const { startFaultProxy } = await import('../harness/fault-proxy.ts');
const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
const { DynamoDBClient, ScanCommand } = await import('@aws-sdk/client-dynamodb');
const { CONTROL_TABLE_INDEXES, dynamoControlStore, ensureControlTable } = await import(
  '../core/control/index.ts'
);

/** Delay of each DNS answer: a resolver outside the function's own cache (a Route 53 Resolver miss). */
export const DNS_DELAY_MS = 30;
export const COST_MESSAGE_BYTES = 10 * 1024;

/** AWS requests of one kind, per message. */
export type RequestCounts = Record<string, number>;

export interface CostRun {
  readonly messages: number;
  /** Requests per message by `service operation`; empty long polls are counted apart. */
  readonly requestsPerMessage: RequestCounts;
  /** SQS receives that returned nothing (fixed cost, not per message). */
  readonly emptyReceives: number;
  /** Bytes the run added to the bucket, per message (raw mail, payloads, markers). */
  readonly storedBytesPerMessage: number;
  /** Bytes of log lines and EMF documents the listener, parse and deliver print per message. */
  readonly logBytesPerMessage: number;
  /** Records per invocation, as the pollers batched them. */
  readonly recordsPerInvocation: { readonly parse: number; readonly deliver: number };
  /** Wall time of one invocation per message, ms (median). */
  readonly durationMs: { readonly parse: number; readonly deliver: number };
  /** CPU time per message, ms (median). */
  readonly cpuMs: { readonly parse: number; readonly deliver: number };
  /** DNS lookups per message. */
  readonly dnsLookups: number;
  /**
   * DynamoDB write units per message: `table` as the store reports them for each write (the larger
   * of the item's size before and after, in KB rounded up); `indexes` one per index entry the run's
   * items hold (a keys-only entry is under 1 KB, written once, when its key attribute is set).
   */
  readonly dynamoWriteUnits: { readonly table: number; readonly indexes: number };
  /** DynamoDB writes (requests) per message, by operation. */
  readonly dynamoWrites: RequestCounts;
  /** Bytes of the message log item and the other items the run left, per message. */
  readonly dynamoBytesPerMessage: number;
}

export interface CostMeasurement {
  readonly messageBytes: number;
  readonly dnsDelayMs: number;
  readonly low: CostRun;
  readonly high: CostRun;
  /** Peak RSS of the process running listener, parse and deliver together, MiB (an upper bound of each). */
  readonly peakRssMiB: number;
}

// dynalite's own item size: the rule it computes write units by, and DynamoDB bills storage by.
const { itemSize } = createRequire(import.meta.url)('dynalite/db/index.js') as {
  itemSize: (item: Record<string, unknown>) => number;
};
/** DynamoDB stores 100 bytes of overhead with each item and each index entry. */
const DYNAMO_ITEM_OVERHEAD = 100;
const CONTROL_TABLE = 'mailbridge-control';
const WRITE_COMMANDS = new Set([
  'PutItemCommand',
  'UpdateItemCommand',
  'DeleteItemCommand',
  'BatchWriteItemCommand',
  'TransactWriteItemsCommand',
]);

/**
 * A DynamoDB client on `endpoint` that asks each write for its consumed capacity and adds it to
 * `counts`, with the writes by operation. A condition that fails still costs a write unit.
 */
function countingDynamoClient(
  endpoint: string,
  counts: { units: number; writes: Map<string, number> },
): InstanceType<typeof DynamoDBClient> {
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!WRITE_COMMANDS.has(context.commandName ?? '')) return next(args);
      const operation = context.commandName!.replace(/Command$/, '');
      counts.writes.set(operation, (counts.writes.get(operation) ?? 0) + 1);
      (args.input as { ReturnConsumedCapacity?: string }).ReturnConsumedCapacity = 'TOTAL';
      try {
        const result = await next(args);
        const consumed = (result.output as { ConsumedCapacity?: unknown }).ConsumedCapacity;
        for (const entry of [consumed ?? []].flat() as { CapacityUnits?: number }[])
          counts.units += entry.CapacityUnits ?? 0;
        return result;
      } catch (error) {
        if ((error as Error).name === 'ConditionalCheckFailedException') counts.units += 1;
        throw error;
      }
    },
    { step: 'initialize', name: 'countWriteUnits' },
  );
  return client;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[sorted.length >> 1]! : Number.NaN;
};

const SECRET = 'whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQ=';

// Each message comes from a domain of its own that publishes SPF and DMARC, so each costs the
// lookups a new sender's does (the function caches answers, and real senders are many).
const SENDERS = 200;
const senderDomain = (n: number) => `s${n}.sender.test`;
const ZONE = Object.fromEntries(
  Array.from({ length: SENDERS }, (_, n) => [
    [senderDomain(n), { TXT: [['v=spf1 ip4:127.0.0.0/8 -all']] }],
    [`_dmarc.${senderDomain(n)}`, { TXT: [['v=DMARC1; p=none']] }],
  ]).flat(),
);

function message(n: number): string {
  const header = [
    `From: Alice <alice@${senderDomain(n)}>`,
    'To: support@example.test',
    `Subject: cost ${n}`,
    `Message-ID: <cost-${n}@${senderDomain(n)}>`,
    'Date: Fri, 04 Dec 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    '',
  ].join('\r\n');
  const line = 'The quick brown fox jumps over the lazy dog, and the message log records it. ';
  return header + `${line}\r\n`.repeat(Math.ceil((COST_MESSAGE_BYTES - header.length) / (line.length + 2)));
}

async function measure(): Promise<CostMeasurement> {
  const emulator = await startEmulatorProcess();
  const info: EmulatorInfo = emulator.info;
  // No fault rules: the proxy only counts the requests, by operation.
  const proxy = await startFaultProxy(info.endpoint);
  let delivered = 0;
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      delivered++;
      res.writeHead(204).end();
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  const config = parseConfig(
    {
      hostname: 'mx.bench.test',
      domains: ['example.test'],
      routes: [
        {
          id: 'cost',
          match: ['*@example.test'],
          endpoints: [`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`],
          secret: { value: SECRET },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      limits: { maxConnections: 500, maxConnectionsPerIp: 500 },
    },
    { source: 'bench', runtime: 'local' },
  );
  const { s3, sqs } = emulatorClients(proxy.endpoint);
  const dynamoCounts = { units: 0, writes: new Map<string, number>() };
  const dynamodb = countingDynamoClient(info.dynamoEndpoint, dynamoCounts);
  await ensureControlTable(dynamodb, CONTROL_TABLE);
  const controlStore = dynamoControlStore(dynamodb, CONTROL_TABLE, { retentionDays: 30 });
  const zone = createDnsZone(ZONE, { delayMs: DNS_DELAY_MS });
  const handlers = createLocalHandlers({
    s3,
    sqs,
    config,
    resources: info,
    secrets: async () => [SECRET],
    resolver: zone.resolve,
    controlStore,
  });
  const timing = { parse: [] as number[], deliver: [] as number[] };
  const cpu = { parse: [] as number[], deliver: [] as number[] };
  const invocations = { parse: 0, deliver: 0 };
  const records = { parse: 0, deliver: 0 };
  const timed =
    (name: 'parse' | 'deliver') =>
    async (event: SQSEvent, context: Context): Promise<unknown> => {
      const started = performance.now();
      const cpuStarted = process.cpuUsage();
      try {
        return await handlers[name](event, context);
      } finally {
        const used = process.cpuUsage(cpuStarted);
        const perRecord = 1 / event.Records.length;
        timing[name].push((performance.now() - started) * perRecord);
        cpu[name].push(((used.user + used.system) / 1000) * perRecord);
        invocations[name]++;
        records[name] += event.Records.length;
      }
    };
  const pollers = [
    await startPoller({
      sqs,
      queueUrl: info.inboundQueueUrl,
      handler: timed('parse'),
      waitTimeSeconds: 1,
      timeoutSeconds: QUEUE_SETTINGS.functionTimeoutSeconds.parse,
    }),
    await startPoller({
      sqs,
      queueUrl: info.deliveryQueueUrl,
      handler: timed('deliver'),
      waitTimeSeconds: 1,
      timeoutSeconds: QUEUE_SETTINGS.functionTimeoutSeconds.deliver,
    }),
  ];
  const listener = await startListener({
    config,
    s3,
    sqs,
    bucket: info.bucket,
    inboundQueueUrl: info.inboundQueueUrl,
    tls: await generateSelfSigned('mx.bench.test'),
    authUsers: new Map(),
    logger: createLogger('listener'),
    metrics: createMetrics('listener'),
    control: { store: controlStore },
  });
  const smtp = createTransport({
    host: '127.0.0.1',
    port: listener.listeners[0]!.port,
    ignoreTLS: true,
    pool: true,
    maxConnections: 10,
  });
  let sent = 0;
  const send = () => {
    const n = sent++ % SENDERS;
    return smtp.sendMail({
      envelope: { from: `alice@${senderDomain(n)}`, to: ['support@example.test'] },
      raw: message(n),
    });
  };
  const until = async (count: number) => {
    const deadline = Date.now() + 120_000;
    while (delivered < count) {
      if (Date.now() > deadline) throw new Error(`${delivered} of ${count} webhooks arrived`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  let peakRss = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 10);

  // Listed past the proxy, so the listing is not counted.
  const lister = emulatorClients(info.endpoint).s3;
  const storedBytes = async () => {
    let bytes = 0;
    let token: string | undefined;
    do {
      const page = await lister.send(
        new ListObjectsV2Command({ Bucket: info.bucket, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) bytes += object.Size ?? 0;
      token = page.NextContinuationToken;
    } while (token);
    return bytes;
  };
  /** Index entries and stored bytes of the control table's items, listed past the counting client. */
  const tableLister = new DynamoDBClient({
    endpoint: info.dynamoEndpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const tableContents = async () => {
    const indexAttributes: string[] = Object.values(CONTROL_TABLE_INDEXES);
    let entries = 0;
    let bytes = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const page = await tableLister.send(
        new ScanCommand({ TableName: CONTROL_TABLE, ExclusiveStartKey: start as never }),
      );
      for (const item of page.Items ?? []) {
        const indexed = indexAttributes.filter((name) => name in item).length;
        entries += indexed;
        bytes += itemSize(item) + DYNAMO_ITEM_OVERHEAD * (1 + indexed);
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return { entries, bytes };
  };
  const counted = () => ({
    calls: new Map(proxy.calls),
    invocations: pollers.reduce((sum, poller) => sum + poller.stats.invocations, 0),
    stored: 0,
  });

  const run = async (count: number, burst: boolean): Promise<CostRun> => {
    await until(delivered); // nothing in flight
    const before = { ...counted(), stored: await storedBytes() };
    const dynamoBefore = { units: dynamoCounts.units, writes: new Map(dynamoCounts.writes) };
    const tableBefore = await tableContents();
    for (const list of [...Object.values(timing), ...Object.values(cpu)]) list.length = 0;
    Object.assign(invocations, { parse: 0, deliver: 0 });
    Object.assign(records, { parse: 0, deliver: 0 });
    zone.calls.length = 0;
    const logsBefore = logBytes;
    const target = delivered + count;
    if (burst) await Promise.all(Array.from({ length: count }, send));
    else
      for (let n = 0; n < count; n++) {
        await send();
        await until(target - count + n + 1);
      }
    await until(target);
    // The pollers delete after the handler returns, and the listener's log writer waits 100 ms to
    // batch: let the last deletes and writes land.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const table = await tableContents();
    const after = counted();
    const stored = (await storedBytes()) - before.stored;
    const calls = new Map(
      [...after.calls]
        .map(([op, n]) => [op.replace('.', ' '), n - (before.calls.get(op) ?? 0)] as const)
        .filter(([, n]) => n > 0),
    );
    // Each invocation is one receive that returned records (no batching window); the rest came back empty.
    const receives = after.invocations - before.invocations;
    const emptyReceives = (calls.get('SQS ReceiveMessage') ?? 0) - receives;
    calls.set('SQS ReceiveMessage', receives);
    return {
      messages: count,
      requestsPerMessage: Object.fromEntries([...calls].sort().map(([kind, n]) => [kind, n / count])),
      emptyReceives,
      storedBytesPerMessage: stored / count,
      logBytesPerMessage: (logBytes - logsBefore) / count,
      recordsPerInvocation: {
        parse: records.parse / invocations.parse,
        deliver: records.deliver / invocations.deliver,
      },
      durationMs: { parse: median(timing.parse), deliver: median(timing.deliver) },
      cpuMs: { parse: median(cpu.parse), deliver: median(cpu.deliver) },
      dnsLookups: zone.calls.length / count,
      dynamoWriteUnits: {
        table: (dynamoCounts.units - dynamoBefore.units) / count,
        indexes: (table.entries - tableBefore.entries) / count,
      },
      dynamoWrites: Object.fromEntries(
        [...dynamoCounts.writes]
          .sort()
          .map(([operation, n]) => [operation, (n - (dynamoBefore.writes.get(operation) ?? 0)) / count]),
      ),
      dynamoBytesPerMessage: (table.bytes - tableBefore.bytes) / count,
    };
  };
  try {
    await run(3, false); // warm: the first invocation of each part pays its module setup
    const low = await run(20, false);
    const high = await run(SENDERS - 3 - 20, true);
    return {
      messageBytes: COST_MESSAGE_BYTES,
      dnsDelayMs: DNS_DELAY_MS,
      low,
      high,
      peakRssMiB: peakRss / 2 ** 20,
    };
  } finally {
    clearInterval(sampler);
    smtp.close();
    await listener.close();
    for (const poller of pollers) await poller.stop();
    s3.destroy();
    sqs.destroy();
    lister.destroy();
    tableLister.destroy();
    dynamodb.destroy();
    receiver.close();
    await proxy.close();
    await emulator.stop();
  }
}

serve({ measure });
