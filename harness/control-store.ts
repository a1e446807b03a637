import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  type ControlStore,
  type DynamoControlStoreOptions,
  dynamoControlStore,
  ensureControlTable,
} from '../core/control/index.ts';
import { newMessageId } from '../core/index.ts';
import { type LocalDynamo, startLocalDynamo } from '../dev/dynamo.ts';

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

/** A message log `received` event as the listener writes it, with a fresh event id. */
export function receivedEvent() {
  return {
    eventId: newMessageId(),
    event: {
      at: new Date().toISOString(),
      type: 'received' as const,
      mailFrom: 'ada@sender.example',
      rcptTo: ['support@example.com'],
      size: 1200,
      remoteAddress: '203.0.113.7',
      helo: 'mail.sender.example',
      tls: true,
    },
  };
}

/** dynalite on 127.0.0.1:0 over a fresh folder, the table made, a store on it. */
export interface TestControlStore {
  readonly dynamo: LocalDynamo;
  readonly dataDir: string;
  readonly store: ControlStore;
  readonly client: DynamoDBClient;
  /** Stops dynalite and starts it again on the same folder (a new port). */
  restart(): Promise<void>;
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
    async close() {
      current.client.destroy();
      await state.dynamo.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
