import { ENV } from '../core/index.ts';
import { emulatorClients } from '../dev/index.ts';
import { generateSelfSigned, startListener } from '../listener/index.ts';
import { PASSWORD, testConfig, USER } from './listener-config.ts';

// The listener under fuzz, in its own process (started by fuzz.ts with --expose-gc and an IPC
// channel), so a crash shows as an exit and its memory is measured apart from the emulator's.
// Protocol: it sends {type:'ready', ports, healthPort}; it answers {type:'memory'} with the heap
// after a full GC, {type:'sessions'} with the open session count; {type:'stop'} closes and exits 0.

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const send = (message: unknown) => process.send?.(message);

const { s3, sqs } = emulatorClients(env('AWS_ENDPOINT_URL'));
const config = testConfig({
  hostname: 'mx.fuzz.test',
  // Every client is 127.0.0.1: per-address limits high enough for the fuzzer's concurrency, and
  // AUTH failures never blocking, so AUTH stays reachable for the whole run.
  limits: {
    maxMessageBytes: 1024 * 1024,
    maxConnections: 2000,
    maxConnectionsPerIp: 2000,
    maxConnectionsPerNetwork: 2000,
    maxAuthFailuresPerIp: 1_000_000_000,
    socketTimeout: '10s',
    closeTimeout: '2s',
  },
});

const listener = await startListener({
  config,
  s3,
  sqs,
  bucket: env(ENV.bucket),
  inboundQueueUrl: env(ENV.inboundQueueUrl),
  tls: await generateSelfSigned('mx.fuzz.test'),
  authUsers: new Map([[USER, PASSWORD]]),
});

const collect = globalThis.gc;
process.on('message', async (message: { type: string }) => {
  if (message.type === 'memory') {
    // Several passes: weak maps and finalizers free in later rounds.
    for (let i = 0; i < 3; i++) {
      collect?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    send({ type: 'memory', rss, heapUsed, external, arrayBuffers, gc: Boolean(collect) });
  } else if (message.type === 'sessions') {
    send({ type: 'sessions', sessions: listener.sessions() });
  } else if (message.type === 'stop') {
    await listener.close();
    s3.destroy();
    sqs.destroy();
    process.exit(0);
  }
});

const port = (mode: string) => listener.listeners.find((bound) => bound.mode === mode)!.port;
send({
  type: 'ready',
  ports: { mx: port('mx'), submission: port('submission'), 'implicit-tls': port('implicit-tls') },
  healthPort: listener.healthPort,
});
