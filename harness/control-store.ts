import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ulid } from 'ulid';
import {
  type ControlStore,
  type DynamoControlStoreOptions,
  dynamoControlStore,
  ensureControlTable,
  type LogEntry,
  type TimelineEvent,
} from '../core/control/index.ts';
import { type LocalDynamo, startLocalDynamo } from '../dev/dynamo.ts';
import { type FaultProxy, type FaultProxyOptions, startFaultProxy } from './fault-proxy.ts';

export const TABLE = 'mailbridge-control';

/** A DynamoDB client for an endpoint with the fixed local credentials; SDK retries off unless asked. */
export function dynamoClient(endpoint: string, maxAttempts = 1): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts,
  });
}

/** A message log `received` event as the listener writes it (now, unless `fields` say otherwise), with a fresh event id. */
export function receivedEvent(
  fields: Partial<Omit<ReceivedEvent, 'type'>> = {},
): LogEntry & { event: ReceivedEvent } {
  return {
    // Not newMessageId: its monotonic clock would date the ids a test makes for past times after now.
    eventId: ulid(),
    event: {
      at: new Date().toISOString(),
      type: 'received',
      mailFrom: 'ada@sender.example',
      rcptTo: ['support@example.com'],
      size: 1200,
      remoteAddress: '203.0.113.7',
      helo: 'mail.sender.example',
      tls: true,
      ...fields,
    },
  };
}

type ReceivedEvent = Extract<TimelineEvent, { type: 'received' }>;

/** The table seen through the fault proxy, which answers as AWS does when asked (5xx, throttling, IAM denial). */
export interface FaultyControlStore {
  readonly proxy: FaultProxy;
  readonly store: ControlStore;
  close(): Promise<void>;
}

/** dynalite on 127.0.0.1:0 over a fresh folder, the table made, a store on it. */
export interface TestControlStore {
  readonly dynamo: LocalDynamo;
  readonly dataDir: string;
  readonly store: ControlStore;
  readonly client: DynamoDBClient;
  /** Stops dynalite and starts it again on the same folder (a new port). */
  restart(): Promise<void>;
  /**
   * A store on the same table behind a fault proxy (closed with this one at the latest). Its client
   * makes `maxAttempts` tries per call (default 1: the SDK's own retries hidden).
   */
  behindFaultProxy(options?: {
    readonly proxy?: FaultProxyOptions;
    readonly maxAttempts?: number;
  }): Promise<FaultyControlStore>;
  close(): Promise<void>;
}

export async function startTestControlStore(
  options: DynamoControlStoreOptions = {},
): Promise<TestControlStore> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-control-'));
  const state = { dynamo: await startLocalDynamo({ dataDir }) };
  const make = async () => {
    const client = dynamoClient(state.dynamo.endpoint, 3);
    await ensureControlTable(client, TABLE);
    return { client, store: dynamoControlStore(client, TABLE, options) };
  };
  let current = await make();
  const proxied = new Set<FaultyControlStore>();
  return {
    get dynamo() {
      return state.dynamo;
    },
    dataDir,
    get store() {
      return current.store;
    },
    get client() {
      return current.client;
    },
    async restart() {
      current.client.destroy();
      await state.dynamo.close();
      state.dynamo = await startLocalDynamo({ dataDir });
      current = await make();
    },
    async behindFaultProxy({ proxy: proxyOptions, maxAttempts } = {}) {
      const proxy = await startFaultProxy(state.dynamo.endpoint, proxyOptions);
      const client = dynamoClient(proxy.endpoint, maxAttempts);
      const faulty: FaultyControlStore = {
        proxy,
        store: dynamoControlStore(client, TABLE, options),
        async close() {
          if (!proxied.delete(faulty)) return;
          client.destroy();
          await proxy.close();
        },
      };
      proxied.add(faulty);
      return faulty;
    },
    async close() {
      for (const faulty of proxied) await faulty.close();
      current.client.destroy();
      await state.dynamo.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
