import { mkdir } from 'node:fs/promises';
import { Server } from 'node:net';
import { type FauxqsServer, startFauxqs } from 'fauxqs';

/** The embedded S3 + SQS emulator, bound to one local address. */
export interface Emulator {
  /** Endpoint for AWS SDK clients, e.g. `http://127.0.0.1:4566`. */
  readonly endpoint: string;
  readonly port: number;
  readonly fauxqs: FauxqsServer;
  close(): Promise<void>;
}

export interface EmulatorOptions {
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** SQLite folder that keeps objects and queued messages across restarts. @default in memory */
  dataDir?: string;
}

/**
 * Starts fauxqs in this process. fauxqs 2.x always listens on 0.0.0.0, which would expose local
 * mail to the network, so the `listen` call it makes is narrowed to `host` while it starts.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? '127.0.0.1';
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
  const listen = Server.prototype.listen;
  Server.prototype.listen = function narrowedListen(this: Server, ...args: unknown[]) {
    const [first] = args;
    if (first && typeof first === 'object' && (first as { host?: string }).host === '0.0.0.0') {
      args[0] = { ...first, host };
    }
    return (listen as (...a: unknown[]) => Server).apply(this, args);
  } as typeof Server.prototype.listen;
  let fauxqs: FauxqsServer;
  try {
    fauxqs = await startFauxqs({
      port: options.port ?? 0,
      logger: false,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    });
  } finally {
    Server.prototype.listen = listen;
  }
  const endpoint = `http://${host}:${fauxqs.port}`;
  return { endpoint, port: fauxqs.port, fauxqs, close: () => fauxqs.stop() };
}
