import { z } from 'zod';
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

/** One delivery of one message to one endpoint of one route (parse → `delivery` queue). */
export const DeliveryJobSchema = z.object({
  version: z.literal(1),
  messageId: z.string(),
  routeId: z.string(),
  endpoint: z.string(),
  recipients: z.array(z.string()).min(1),
  payload: ObjectRefSchema,
  webhookId: z.string(),
  /**
   * The objects behind the payload's presigned links (`raw.url`, and `message.attachments[index].url`
   * for the attachments this route links), so the deliver function signs them afresh at every try:
   * a link signed with a role's temporary credentials dies with them, hours before the last retry.
   * Absent on jobs queued before links were recorded; their payload goes as stored.
   */
  links: z
    .object({
      raw: ObjectRefSchema,
      attachments: z.array(ObjectRefSchema.extend({ index: z.number().int().min(0) })),
    })
    .optional(),
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
