/**
 * The parse or the deliver function in a process of its own, for bench/payload.ts: its peak RSS
 * is the function's. S3 is the emulator, but for single PutObject bodies over what the emulator
 * takes (11 MiB; S3 takes 5 GB), which are kept in a file here and read back from it.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Message } from '@aws-sdk/client-sqs';
import { parseConfig } from '../core/index.ts';
import { createLocalHandlers, emulatorClients, lambdaContext, sqsEventFromMessages } from '../dev/index.ts';
import { serve } from './ipc.ts';
import type { EmulatorInfo } from './servers.ts';

/** The emulator, the endpoint, and the folder (shared by both functions) that stands in for S3's large objects. */
const info = JSON.parse(process.argv[2]!) as EmulatorInfo & { webhookUrl: string; spill: string };
const { spill } = info;
const SECRET = `whsec_${Buffer.from('payload bench').toString('base64')}`;
const EMULATOR_MAX_BODY = 11 * 1024 * 1024;

const { s3, sqs } = emulatorClients(info.endpoint);
const spilledFile = (key: string) => join(spill, encodeURIComponent(key));
const isSpilled = (key: string) => existsSync(spilledFile(key));
s3.middlewareStack.add(
  (next, context) => async (args) => {
    const input = args.input as { Key?: string; Body?: unknown };
    const file = spilledFile(input.Key ?? '');
    if (context.commandName === 'PutObjectCommand') {
      const body = input.Body;
      const size =
        typeof body === 'string' ? Buffer.byteLength(body) : (body as Uint8Array | undefined)?.byteLength;
      if (size !== undefined && size > EMULATOR_MAX_BODY) {
        writeFileSync(file, body as string | Uint8Array);
        return { output: { $metadata: {} } as never, response: {} };
      }
    }
    if (context.commandName === 'GetObjectCommand' && isSpilled(input.Key ?? '')) {
      const bytes = readFileSync(file);
      const body = Object.assign(Readable.from([bytes]), {
        transformToByteArray: async () => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
        transformToString: async () => bytes.toString('utf8'),
      });
      return { output: { $metadata: {}, Body: body, ContentLength: bytes.length } as never, response: {} };
    }
    return next(args);
  },
  { step: 'initialize' },
);

const config = parseConfig(
  {
    domains: ['example.test'],
    routes: [
      { id: 'bench', match: ['*@example.test'], endpoints: [info.webhookUrl], secret: { value: SECRET } },
    ],
    listeners: [{ port: 0, mode: 'mx' }],
    health: { port: 0 },
  },
  { source: 'bench', runtime: 'local' },
);
const handlers = createLocalHandlers({
  s3,
  sqs,
  resources: info,
  config,
  secrets: async () => [SECRET],
  resolver: async (name: string) => {
    throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  },
});
const region = 'us-east-1';

async function timed(work: () => Promise<{ batchItemFailures: unknown[] }>) {
  const started = performance.now();
  const { batchItemFailures } = await work();
  return { ms: performance.now() - started, failed: batchItemFailures.length };
}

serve({
  /** Parses the SQS messages of the inbound queue given. */
  parse: ({ messages, queueArn }: { messages: Message[]; queueArn: string }) =>
    timed(() =>
      handlers.parse(
        sqsEventFromMessages(messages, queueArn, region),
        lambdaContext('parse', region, 60_000),
      ),
    ),
  /** Delivers the SQS messages of the delivery queue given; `stored` is the payload's size as stored. */
  deliver: ({ messages, queueArn }: { messages: Message[]; queueArn: string }) =>
    timed(() =>
      handlers.deliver(
        sqsEventFromMessages(messages, queueArn, region),
        lambdaContext('deliver', region, 60_000),
      ),
    ),
  storedBytes: async ({ key }: { key: string }) => {
    if (isSpilled(key)) return statSync(spilledFile(key)).size;
    const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
    return (await s3.send(new HeadObjectCommand({ Bucket: info.bucket, Key: key }))).ContentLength;
  },
});
