import * as z from 'zod';
import { InvalidRecordError } from './errors.ts';

const TlsInfoSchema = z.object({ protocol: z.string(), cipher: z.string() });

/** The message the listener queues on `inbound` once the raw message is stored (docs/architecture.md, "InboundEvent"). */
export const InboundEventSchema = z.object({
  version: z.literal(1),
  id: z.string().regex(/^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID'),
  receivedAt: z.iso.datetime(),
  raw: z.object({
    bucket: z.string().min(1),
    key: z.string().min(1),
    size: z.number().int().min(0),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  envelope: z.object({
    mailFrom: z.string(),
    rcptTo: z.array(z.string()).min(1),
    helo: z.string(),
    remoteAddress: z.string(),
    remotePort: z.number().int(),
    localPort: z.number().int(),
    tls: TlsInfoSchema.nullable(),
    authUser: z.string().nullable(),
  }),
  /** Set when DATA had lines ending in a bare LF (RFC 5321 §2.3.8); kept so the parser can flag it. */
  bareLf: z.boolean().optional(),
});
export type InboundEvent = z.infer<typeof InboundEventSchema>;

const ObjectRefSchema = z.object({ bucket: z.string(), key: z.string() });

/**
 * An InboundEvent that parse gave up on, on the inbound DLQ: `reason` says why (`unrouted`: its
 * recipients, the ones in `envelope.rcptTo`, no longer match any route). Redriven to `inbound`, it
 * is parsed again, with the config of that time.
 */
export type InboundDeadLetterEntry = InboundEvent & {
  readonly reason: 'unrouted';
  readonly lastError: string;
};

/**
 * One delivery of one message to one endpoint of one route (parse → `delivery` queue). It holds
 * nothing that grows with the message (the payload holds that), so a route with many endpoints
 * never makes an SQS batch too long.
 */
export const DeliveryJobSchema = z.object({
  version: z.literal(1),
  messageId: z.string(),
  routeId: z.string(),
  endpoint: z.string(),
  recipients: z.array(z.string()).min(1),
  payload: ObjectRefSchema,
  webhookId: z.string(),
  /** Tries made so far, and the outcome of the last one; absent on the first try. */
  attempt: z.number().int().min(0).default(0),
  lastError: z.string().optional(),
  lastStatus: z.number().int().optional(),
});
export type DeliveryJob = z.output<typeof DeliveryJobSchema>;

/**
 * Validates one SQS record body at the edge (STYLE 3): JSON, then the queue's schema. Throws an
 * {@link InvalidRecordError} naming the record and every bad field, so core never sees `unknown`.
 */
export function parseRecordBody<T extends z.ZodType>(
  record: { messageId: string; body: string },
  schema: T,
  what: string,
): z.output<T> {
  let body: unknown;
  try {
    body = JSON.parse(record.body);
  } catch (error) {
    throw new InvalidRecordError(`record ${record.messageId}: body is not JSON`, { cause: error });
  }
  const result = schema.safeParse(body);
  if (!result.success) {
    const issues = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new InvalidRecordError(`record ${record.messageId}: not ${what}: ${issues.join('; ')}`);
  }
  return result.data;
}

/** SQS limits of a message and of a batch (SendMessageBatch). */
export const SQS_LIMITS = {
  /** Bytes of one message body, and of all the bodies of one batch together (1 MiB since 2025). */
  messageBytes: 1024 * 1024,
  batchEntries: 10,
} as const;

/**
 * The JSON text of `value`, written so SQS takes it: SQS accepts only #x9 #xA #xD #x20-#xD7FF
 * #xE000-#xFFFD #x10000-#x10FFFF (its "Valid unicode characters"), and refuses the whole message
 * otherwise. JSON.stringify already escapes control characters and lone surrogates; U+FFFE and
 * U+FFFF are escaped here too, as are surrogate pairs (the local emulator refuses them), which
 * decodes to the same string.
 */
export function sqsJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\ud800-\udfff\ufffe\uffff]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Message bodies grouped into SendMessageBatch calls: at most {@link SQS_LIMITS}.batchEntries each,
 * and at most {@link SQS_LIMITS}.messageBytes of bodies together (SQS answers a longer batch with
 * BatchRequestTooLong, for every entry).
 */
export function sqsBatches(bodies: readonly string[], limits: typeof SQS_LIMITS = SQS_LIMITS): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const body of bodies) {
    const size = Buffer.byteLength(body);
    if (batch.length > 0 && (batch.length === limits.batchEntries || bytes + size > limits.messageBytes)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(body);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
