import * as z from 'zod';
import { formatConfigPath } from './config-text.ts';
import { InvalidRecordError } from './errors.ts';
import { FilteringFactsSchema } from './filtering/schemas.ts';

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
  /**
   * Set on a retry of one route (`POST /v1/messages/{id}/retry`): parse delivers to this route only,
   * and leaves the recipients of the message's other routes alone.
   */
  onlyRoute: z.string().min(1).optional(),
  /**
   * The scans and the per-route decisions made before the `250` (see FilteringFactsSchema); absent
   * on events written before the listener filtered, which parse delivers with verdicts `unavailable`.
   */
  filtering: FilteringFactsSchema.optional(),
});
export type InboundEvent = z.infer<typeof InboundEventSchema>;

const ObjectRefSchema = z.object({ bucket: z.string(), key: z.string() });

/**
 * Where a delivery job's webhook payload is: inside the job (`inline`, the payload document itself)
 * when the job fits one SQS message, else an S3 object (`bucket`, `key`) the deliver function reads.
 * Either way its links are still `s3://` placeholders, signed at each try.
 */
export const JobPayloadSchema = z.union([
  z.object({ inline: z.record(z.string(), z.unknown()) }),
  ObjectRefSchema,
]);
export type JobPayload = z.output<typeof JobPayloadSchema>;

/**
 * One delivery of one message to one endpoint of one route (parse → `delivery` queue). The payload
 * travels inside it when the job fits {@link INLINE_JOB_BYTES}, so a typical message costs no S3
 * write beyond its raw copy; a larger one refers to the payload in S3.
 */
export const DeliveryJobSchema = z.object({
  version: z.literal(1),
  messageId: z.string(),
  routeId: z.string(),
  endpoint: z.string(),
  recipients: z.array(z.string()).min(1),
  payload: JobPayloadSchema,
  webhookId: z.string(),
  /** The outcome of the last try, on a job redriven from the delivery DLQ (its entry keeps them). */
  lastError: z.string().optional(),
  lastStatus: z.number().int().optional(),
});
export type DeliveryJob = z.output<typeof DeliveryJobSchema>;

/**
 * An InboundEvent that parse gave up on, on the inbound DLQ: `reason` says why (`unrouted`: its
 * recipients, the ones in `envelope.rcptTo`, no longer match any route). Redriven to `inbound`, it
 * is parsed again, with the config of that time.
 */
export const InboundDeadLetterEntrySchema = InboundEventSchema.extend({
  reason: z.enum(['unrouted']),
  lastError: z.string(),
});
export type InboundDeadLetterEntry = z.output<typeof InboundDeadLetterEntrySchema>;

/**
 * What the inbound DLQ holds: the entries parse wrote, and events SQS moved there itself after
 * maxReceiveCount (parse failed on them every time), which carry neither `reason` nor `lastError`.
 */
export const InboundDlqBodySchema = InboundDeadLetterEntrySchema.partial({ reason: true, lastError: true });

/**
 * Why deliver dead-lettered a job: `parked` when its endpoint is disabled (core/endpoint-health.ts),
 * tried or not (docs/architecture.md, "Delivery semantics").
 */
export const DeadLetterReasonSchema = z.enum(['permanent', 'gone', 'blocked', 'exhausted', 'parked']);
export type DeadLetterReason = z.output<typeof DeadLetterReasonSchema>;

/** The delivery DLQ entry deliver writes: the job as received, plus how and why it ended there. */
export const DeadLetterEntrySchema = DeliveryJobSchema.extend({
  reason: DeadLetterReasonSchema,
  /** Tries made in all: 0 when the endpoint was disabled before the first. */
  attempts: z.number().int().min(0),
});
export type DeadLetterEntry = z.output<typeof DeadLetterEntrySchema>;

/**
 * What the delivery DLQ holds: the entries deliver wrote, and jobs SQS moved there itself after
 * maxReceiveCount (the function crashed or timed out on them every time), which carry neither
 * `reason` nor `attempts`.
 */
export const DeliveryDlqBodySchema = DeadLetterEntrySchema.partial({ reason: true, attempts: true });

/**
 * Checks a queue message body: JSON, then the queue's schema. A failure names every bad field, so
 * a reader can show a malformed message as such rather than crash on it.
 */
export function parseQueueBody<T extends z.ZodType>(
  body: string,
  schema: T,
  what: string,
): { success: true; data: z.output<T> } | { success: false; error: string } {
  let document: unknown;
  try {
    document = JSON.parse(body);
  } catch {
    return { success: false, error: 'body is not JSON' };
  }
  const result = schema.safeParse(document);
  if (result.success) return { success: true, data: result.data };
  const issues = result.error.issues.map(
    (issue) => `${formatConfigPath(issue.path) || '(root)'}: ${issue.message}`,
  );
  return { success: false, error: `not ${what}: ${issues.join('; ')}` };
}

/**
 * Validates one SQS record body at the edge with {@link parseQueueBody}. Throws an
 * {@link InvalidRecordError} naming the record and every bad field, so core never sees `unknown`.
 */
export function parseRecordBody<T extends z.ZodType>(
  record: { messageId: string; body: string },
  schema: T,
  what: string,
): z.output<T> {
  const result = parseQueueBody(record.body, schema, what);
  if (!result.success) throw new InvalidRecordError(`record ${record.messageId}: ${result.error}`);
  return result.data;
}

/** SQS limits of a message and of a batch (SendMessageBatch). */
export const SQS_LIMITS = {
  /** Bytes of one message body, and of all the bodies of one batch together (1 MiB since 2025). */
  messageBytes: 1024 * 1024,
  batchEntries: 10,
  /** SQS bills each 64 KiB of a message body as one request ("Amazon SQS pricing", request size). */
  billingChunkBytes: 64 * 1024,
} as const;

/**
 * The largest delivery job that carries its payload inline: one SQS message less a margin, so the
 * delivery DLQ entry (the job plus reason, attempts and last error) still fits one message.
 */
export const INLINE_JOB_BYTES = SQS_LIMITS.messageBytes - 16 * 1024;

/** Requests SQS bills for sending (or receiving) one message body of `bytes`: one per 64 KiB chunk. */
export function billedSqsRequests(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / SQS_LIMITS.billingChunkBytes));
}

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
