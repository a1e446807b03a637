import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

// dynalite ships no types: a factory returning a node:http Server that speaks the DynamoDB API.
const dynalite = createRequire(import.meta.url)('dynalite') as (options: {
  path?: string;
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}) => Server;

/** The embedded DynamoDB-compatible store of local runs. */
export interface LocalDynamo {
  /** Point a DynamoDB client here. */
  readonly endpoint: string;
  /** Stops serving and closes the database, so a restart on the same folder finds everything. */
  close(): Promise<void>;
}

/** A client of the embedded store at `endpoint`, which takes any credentials: these are fixed. */
export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
}

/**
 * Starts dynalite in this process: LevelDB files under `dataDir` (in memory without one), served
 * on `host:port` (port 0 picks a free one). Tables become active at once.
 */
export async function startLocalDynamo(
  options: { dataDir?: string; host?: string; port?: number } = {},
): Promise<LocalDynamo> {
  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  const server = dynalite({ path: options.dataDir, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { address, port } = server.address() as AddressInfo;
  return {
    endpoint: `http://${address}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
