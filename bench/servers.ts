import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { LocalResources } from '../dev/index.ts';
import { LISTENER_V8_FLAGS } from '../infra/listener-image.ts';
import { Worker, which } from './ipc.ts';
import type { ServerKind } from './server-process.ts';

/** A server under test, in its own process. */
export interface RunningServer {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

export type EmulatorInfo = LocalResources & {
  readonly endpoint: string;
  /** The embedded DynamoDB-compatible store, for the control plane's table. */
  readonly dynamoEndpoint: string;
};

/** The emulator in its own process, with the pipeline's bucket and queues. */
export async function startEmulatorProcess(): Promise<{ info: EmulatorInfo; stop: () => Promise<void> }> {
  const worker = new Worker<EmulatorInfo>('./emulator-process.ts');
  return { info: await worker.ready, stop: () => worker.stop() };
}

/** One of server-process.ts's kinds; durable kinds need the emulator. */
export async function startServer(
  kind: ServerKind,
  emulator?: EmulatorInfo,
  extra: Record<string, unknown> = {},
): Promise<RunningServer & { worker: Worker<{ port: number }> }> {
  const options = emulator
    ? {
        endpoint: emulator.endpoint,
        bucket: emulator.bucket,
        inboundQueueUrl: emulator.inboundQueueUrl,
        deliveryQueueUrl: emulator.deliveryQueueUrl,
        deliveryDlqUrl: emulator.deliveryDlqUrl,
        inboundDlqUrl: emulator.inboundDlqUrl,
        ...extra,
      }
    : extra;
  // --expose-gc: `liveMemory` measures what is held, without the garbage a collection would free.
  // The listener runs with the V8 flags of its container.
  const worker = new Worker<{ port: number }>(
    './server-process.ts',
    [kind, JSON.stringify(options)],
    ['--expose-gc', ...(kind === 'listener' ? LISTENER_V8_FLAGS : [])],
  );
  const { port } = await worker.ready;
  return { port, pid: worker.pid, worker, stop: () => worker.stop() };
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let tries = 0; tries < 100; tries++) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Postfix's smtp-sink binary: `$SMTP_SINK`, or `smtp-sink` on PATH. */
export function postfixSinkBinary(): string | undefined {
  const configured = process.env.SMTP_SINK;
  if (configured && existsSync(configured)) return configured;
  return which('smtp-sink');
}

/** Postfix smtp-sink, discarding every message (run from an unpacked .deb: its libraries sit in ../lib/postfix). */
export async function startPostfixSink(binary: string): Promise<RunningServer> {
  const port = await freePort();
  const libraries = join(dirname(binary), '..', 'lib', 'postfix');
  const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), `127.0.0.1:${port}`, '1024'];
  const child = spawn(binary, args, {
    stdio: 'ignore',
    env: {
      ...process.env,
      LD_LIBRARY_PATH: [libraries, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    },
  });
  await waitForPort(port, child);
  return {
    port,
    pid: child.pid ?? 0,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Haraka is detected only: no bench config for it ships here. */
export function harakaBinary(): string | undefined {
  return which('haraka');
}
