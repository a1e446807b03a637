import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { s3Presigner } from '../../../core/aws/index.ts';
import {
  type Config,
  type DeliveryJob,
  DeliveryJobSchema,
  fillLinks,
  type InboundDeadLetterEntry,
  type InboundEvent,
  newMessageId,
  parseConfigText,
  rawObjectKey,
  type WebhookPayload,
  webhookPayloadJsonSchema,
} from '../../../core/index.ts';
import { createParseHandler, type ParseDeps } from '../../../functions/parse/index.ts';
import { createDnsZone, type DnsZone, type ZoneRecords } from '../../../harness/dns-zone.ts';
import { startTestEmulator, type TestEmulator } from '../../../harness/emulator.ts';

export const FIXTURES = new URL('../../../harness/fixtures/mail/', import.meta.url);

/** Routes used by the parse tests: three routes on example.test, one of them with two endpoints. */
export const TEST_CONFIG = `
hostname: mx.example.test
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes:
  - id: support
    match: ['support@example.test', 'ticket@example.test']
    endpoints: ['https://hooks.app.test/support']
    secret: { value: whsec_dGVzdA== }
    attachments: { mode: inline, inlineLimitBytes: 1000 }
  - id: billing
    match: ['billing@example.test']
    endpoints: ['https://hooks.app.test/billing', 'https://audit.app.test/billing']
    secret: { value: whsec_dGVzdA== }
  - id: sales
    match: ['sales@example.test']
    endpoints: ['https://hooks.app.test/sales']
    secret: { value: whsec_dGVzdA== }
    attachments: { mode: url }
`;

// ajv-formats checks `date-time` (RFC 3339) for real; `formats: { 'date-time': true }` accepts anything.
const ajv = addFormats.default(new Ajv2020({ allErrors: true }));
const validatePayload = ajv.compile(webhookPayloadJsonSchema());

/** Asserts a payload against the published JSON Schema (ajv, draft 2020-12). */
export function assertSchemaValid(payload: unknown, label = 'payload'): asserts payload is WebhookPayload {
  if (!validatePayload(payload)) {
    throw new Error(`${label} does not match the JSON Schema: ${ajv.errorsText(validatePayload.errors)}`);
  }
}

/** The emulator, a fake DNS zone and helpers to store raw messages and read back what parse produced. */
export interface ParseHarness {
  readonly emu: TestEmulator;
  readonly config: Config;
  readonly zone: DnsZone;
  handler(overrides?: Partial<ParseDeps>): ReturnType<typeof createParseHandler>;
  /** Stores a raw message the way the listener does and returns its InboundEvent. */
  store(raw: Buffer | string, envelope?: Partial<InboundEvent['envelope']>): Promise<InboundEvent>;
  fixture(name: string): Promise<Buffer>;
  /** Every job on the delivery queue, removed from it. */
  drainJobs(): Promise<DeliveryJob[]>;
  /** Every entry on the inbound DLQ, removed from it. */
  drainDeadLetters(): Promise<InboundDeadLetterEntry[]>;
  getObject(key: string): Promise<Buffer>;
  /** The payload of a job as the deliver function sends it (links signed), checked against the JSON Schema. */
  payload(job: DeliveryJob): Promise<WebhookPayload>;
  close(): Promise<void>;
}

export async function startParseHarness(records: ZoneRecords = {}): Promise<ParseHarness> {
  const emu = await startTestEmulator();
  const config = parseConfigText(TEST_CONFIG, { source: 'test.yaml', runtime: 'local' });
  const zone = createDnsZone(records);
  const { bucket, deliveryQueueUrl, inboundDlqUrl } = emu.resources;
  const presign = s3Presigner(emu.s3);
  /** Receives and deletes everything on a queue. */
  const drain = async (queueUrl: string): Promise<string[]> => {
    const bodies: string[] = [];
    for (;;) {
      const received = await emu.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
      );
      const messages = received.Messages ?? [];
      if (messages.length === 0) return bodies;
      bodies.push(...messages.map((message) => message.Body!));
      await emu.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: messages.map((message, index) => ({
            Id: String(index),
            ReceiptHandle: message.ReceiptHandle!,
          })),
        }),
      );
    }
  };
  const getObject = async (key: string) => {
    const object = await emu.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await object.Body!.transformToByteArray());
  };
  return {
    emu,
    config,
    zone,
    handler: (overrides = {}) =>
      createParseHandler({
        s3: emu.s3,
        sqs: emu.sqs,
        bucket,
        deliveryQueueUrl,
        inboundDlqUrl,
        config,
        resolver: zone.resolve,
        ...overrides,
      }),
    async store(raw, envelope = {}) {
      const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
      const receivedAt = new Date();
      const id = newMessageId(receivedAt.getTime());
      const key = rawObjectKey(id, receivedAt);
      await emu.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
      return {
        version: 1,
        id,
        receivedAt: receivedAt.toISOString(),
        raw: { bucket, key, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
        envelope: {
          mailFrom: 'alice@sender.test',
          rcptTo: ['support@example.test'],
          helo: 'mail.sender.test',
          remoteAddress: '192.0.2.10',
          remotePort: 40000,
          localPort: 25,
          tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
          authUser: null,
          ...envelope,
        },
      };
    },
    fixture: (name) => readFile(new URL(name, FIXTURES)),
    async drainJobs() {
      return (await drain(deliveryQueueUrl)).map((body) => DeliveryJobSchema.parse(JSON.parse(body)));
    },
    async drainDeadLetters() {
      return (await drain(inboundDlqUrl)).map((body) => JSON.parse(body) as InboundDeadLetterEntry);
    },
    getObject,
    async payload(job) {
      const stored =
        'inline' in job.payload
          ? Buffer.from(JSON.stringify(job.payload.inline))
          : await getObject(job.payload.key);
      const body = await fillLinks(
        stored,
        (ref) => presign(ref.bucket, ref.key),
        () => true,
      );
      const payload: unknown = JSON.parse(body.toString('utf8'));
      assertSchemaValid(payload, `payload of ${job.webhookId}`);
      return payload;
    },
    close: () => emu.close(),
  };
}
