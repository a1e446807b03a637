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
 * An InboundEvent that parse gave up on, on the inbound DLQ: `reason` says why (`unrouted`: its
 * recipients, the ones in `envelope.rcptTo`, no longer match any route). Redriven to `inbound`, it
 * is parsed again, with the config of that time.
 */
export type InboundDeadLetterEntry = InboundEvent & {
  readonly reason: 'unrouted';
  readonly lastError: string;
};

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
      (issue) => `${formatConfigPath(issue.path) || '(root)'}: ${issue.message}`,
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
