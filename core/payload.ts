import { z } from 'zod';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

const AddressSchema = z.object({
  name: z.string().meta({ description: 'Display name, decoded; "" when there is none.' }),
  address: z.string(),
});

const HeaderSchema = z.object({
  name: z.string().meta({ description: 'The field name as written.' }),
  value: z.string().meta({
    description:
      'The raw value, unfolded (RFC 5322 §2.2.3) and not decoded: RFC 2047 encoded words stay as sent. The decoded values are in the named message fields.',
  }),
});

const AttachmentBaseSchema = z.object({
  filename: z
    .string()
    .nullable()
    .meta({ description: 'Decoded (RFC 2047/2231); null when the part has none.' }),
  contentType: z.string(),
  size: z.number().int().min(0).meta({ description: 'Bytes after transfer decoding, measured.' }),
  sha256: sha256Hex.meta({ description: 'SHA-256 of the decoded bytes, lowercase hex.' }),
  disposition: z.string().nullable().meta({ description: '"attachment", "inline" or null.' }),
  contentId: z
    .string()
    .nullable()
    .meta({ description: 'Content-ID without angle brackets, for cid: links in the HTML.' }),
});

const AttachmentSchema = z.union([
  AttachmentBaseSchema.extend({
    content: z
      .string()
      .meta({ description: 'The bytes, base64; when the route asks for inline attachments and it fits.' }),
  }),
  AttachmentBaseSchema.extend({
    url: z.string().meta({
      description:
        'A presigned HTTPS GET link to the bytes. It expires: after at most 7 days, and sooner when the signing credentials do; fetch it when the webhook arrives.',
    }),
  }),
]);

const AuthSchema = z.object({
  spf: z.object({
    result: z.enum(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror']),
    domain: z
      .string()
      .nullable()
      .meta({ description: 'The MAIL FROM domain checked (HELO for a null sender).' }),
  }),
  dkim: z
    .array(
      z.object({
        result: z.enum(['pass', 'fail', 'neutral', 'none', 'policy', 'temperror', 'permerror']),
        domain: z.string().nullable().meta({ description: 'The signing domain (d=).' }),
        selector: z.string().nullable().meta({ description: 'The key selector (s=).' }),
      }),
    )
    .meta({
      description: 'One entry per DKIM-Signature header, in order; empty when the message is unsigned.',
    }),
  dmarc: z.object({
    result: z.enum(['pass', 'fail', 'none', 'temperror', 'permerror']),
    policy: z.enum(['none', 'quarantine', 'reject']).nullable().meta({
      description: 'The policy the From domain asks receivers to apply on fail; null without a record.',
    }),
    domain: z.string().nullable().meta({ description: 'The From header domain.' }),
  }),
  arc: z.object({ result: z.enum(['pass', 'fail', 'none', 'temperror', 'permerror']) }),
});

/**
 * The body of every webhook, version 1 (docs/architecture.md, "The webhook payload"). The published JSON Schema
 * (`schema/webhook-payload.v1.json`) is generated from this schema, as are the types.
 */
export const WebhookPayloadSchema = z
  .object({
    type: z.literal('email.received'),
    version: z.literal(1),
    id: z.string().meta({ description: 'mailbridge message id (a ULID), the same for every route.' }),
    receivedAt: z.iso.datetime().meta({ description: 'When the listener accepted the message.' }),
    route: z.object({
      id: z.string(),
      recipients: z
        .array(z.string())
        .min(1)
        .meta({ description: 'The envelope recipients this webhook is for.' }),
    }),
    envelope: z.object({
      mailFrom: z.string().meta({ description: 'MAIL FROM; "" for a null sender (bounces).' }),
      rcptTo: z.array(z.string()).meta({
        description:
          'RCPT TO addresses on this route. Recipients routed elsewhere are not disclosed (they may be Bcc).',
      }),
      helo: z.string(),
      remoteAddress: z.string(),
      tls: z.object({ protocol: z.string(), cipher: z.string() }).nullable(),
    }),
    message: z.object({
      messageId: z.string().nullable().meta({ description: 'The Message-ID header, with angle brackets.' }),
      inReplyTo: z.string().nullable(),
      references: z.array(z.string()),
      date: z.iso
        .datetime()
        .nullable()
        .meta({ description: 'The Date header in UTC; null if absent or invalid.' }),
      subject: z.string().nullable(),
      from: z.array(AddressSchema),
      replyTo: z.array(AddressSchema),
      to: z.array(AddressSchema),
      cc: z.array(AddressSchema),
      headers: z.array(HeaderSchema).meta({ description: 'Every header of the message, in order.' }),
      text: z.string().nullable().meta({
        description: 'The plain-text body in UTF-8 (made from the HTML when there is no text part).',
      }),
      html: z.string().nullable(),
      strippedText: z
        .string()
        .nullable()
        .meta({ description: 'The text without quoted history and signature: the reply itself.' }),
      mailboxHash: z
        .string()
        .nullable()
        .meta({ description: 'The plus tag of the first route recipient: "abc" for ticket+abc@…' }),
      attachments: z.array(AttachmentSchema),
    }),
    auth: AuthSchema,
    raw: z.object({
      size: z.number().int().min(0),
      sha256: sha256Hex,
      url: z.string().meta({ description: 'Presigned link to the message as received (RFC 5322).' }),
    }),
    warnings: z.array(z.string()).meta({
      description:
        'Problems met while reading the message, as "code: detail" ("mime_parse_failed: …", "bare_lf", "duplicate: same content and envelope as message <id>" for a copy a sender resent). A message whose MIME cannot be parsed still arrives, with what could be read and the raw link.',
    }),
  })
  .meta({
    title: 'mailbridge webhook payload, version 1',
    description: 'The JSON body of an email.received webhook.',
  });

export type WebhookPayload = z.output<typeof WebhookPayloadSchema>;
export type WebhookMessage = WebhookPayload['message'];
export type WebhookAttachment = WebhookMessage['attachments'][number];
export type WebhookAddress = WebhookMessage['from'][number];
export type WebhookAuth = WebhookPayload['auth'];

/** Where the payload schema is published in the repository. */
export const WEBHOOK_PAYLOAD_SCHEMA_PATH = 'schema/webhook-payload.v1.json';

/** The JSON Schema (draft 2020-12) of {@link WebhookPayloadSchema}, as committed under `schema/`. */
export function webhookPayloadJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(WebhookPayloadSchema, { io: 'output' }) as Record<string, unknown>;
}
