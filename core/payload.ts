import * as z from 'zod';
import { SpamVerdictSchema, VirusVerdictSchema } from './filtering/schemas.ts';

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

/** What was read from an attachment that is itself a message: a TNEF `winmail.dat` or an Outlook `.msg`. */
const UnpackedSchema = z.object({
  format: z
    .enum(['tnef', 'msg'])
    .meta({ description: '"tnef" (winmail.dat, MS-OXTNEF) or "msg" (Outlook item, MS-OXMSG).' }),
  subject: z.string().nullable(),
  from: z.object({ name: z.string(), address: z.string().nullable() }).nullable().meta({
    description: 'The sender the item names; the address is null when it only has an Exchange (X.500) one.',
  }),
  text: z.string().nullable().meta({ description: 'Its plain-text body, when it has one.' }),
  attachments: z.number().int().min(0).meta({
    description:
      "How many files were unpacked from it; each follows in `attachments` with `containedIn` set to this one's index.",
  }),
});

/** Fields added to v1 attachments (additive: absent on payloads made before them). */
const AttachmentAdditions = {
  containedIn: z.number().int().min(0).optional().meta({
    description:
      'Set on a file unpacked from a winmail.dat or .msg attachment: the index in `attachments` of that container, which is kept too.',
  }),
  unpacked: UnpackedSchema.optional().meta({
    description: 'Set on a winmail.dat (TNEF) or .msg attachment that was opened: what it holds.',
  }),
};

const AttachmentSchema = z.union([
  AttachmentBaseSchema.extend({
    content: z
      .string()
      .meta({ description: 'The bytes, base64; when the route asks for inline attachments and it fits.' }),
    ...AttachmentAdditions,
  }),
  AttachmentBaseSchema.extend({
    url: z.string().meta({
      description:
        'A presigned HTTPS GET link to the bytes. It expires: after at most 7 days, and sooner when the signing credentials do; fetch it when the webhook arrives.',
    }),
    ...AttachmentAdditions,
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

const FlagsSchema = z.object({
  autoReply: z.boolean().meta({
    description:
      'Sent by a program, not typed by a person: RFC 3834 Auto-Submitted other than "no", X-Autoreply, X-Autorespond, Precedence auto_reply/bulk/junk/list, or a null reverse-path (MAIL FROM:<>). Do not answer it, or tickets loop.',
  }),
  bulk: z
    .boolean()
    .meta({ description: 'Mailing-list or bulk mail: List-Id, List-Unsubscribe or Precedence: bulk.' }),
  bounce: z.boolean().meta({
    description:
      'A delivery status notification (RFC 3464 multipart/report) or a non-standard bounce from MAILER-DAEMON/postmaster.',
  }),
});

const BounceSchema = z.object({
  action: z.string().nullable().meta({
    description: 'RFC 3464 Action, lowercase: "failed", "delayed", "delivered", "relayed" or "expanded".',
  }),
  status: z
    .string()
    .nullable()
    .meta({ description: 'RFC 3463 status code, e.g. "5.1.1" (5.x.x permanent, 4.x.x temporary).' }),
  finalRecipient: z
    .string()
    .nullable()
    .meta({ description: 'The address that could not be reached (Final-Recipient, without "rfc822;").' }),
  diagnosticCode: z
    .string()
    .nullable()
    .meta({ description: 'The remote server\'s answer, e.g. "smtp; 550 5.1.1 User unknown".' }),
  originalMessageId: z.string().nullable().meta({
    description:
      'Message-ID of the message that bounced, from the returned message or headers: match it to what you sent.',
  }),
});

const ForwardedSchema = z.object({
  from: z.object({ name: z.string(), address: z.string().nullable() }).nullable().meta({
    description: 'The original sender, as the forwarded header block or the attached message names it.',
  }),
  subject: z.string().nullable(),
  date: z.string().nullable().meta({
    description: 'The original date as written in the forward (clients write it in their own formats).',
  }),
});

/** Reply-by-email fields added to v1 messages (additive: absent on payloads made before them). */
const MessageAdditions = {
  flags: FlagsSchema.optional().meta({
    description: 'What kind of mail this is, so an app can stop reply loops without reading headers.',
  }),
  bounce: BounceSchema.nullable().optional().meta({
    description:
      "For a delivery status notification: the first failed (else the first) recipient's report; null otherwise.",
  }),
  strippedHtml: z.string().nullable().optional().meta({
    description:
      "The HTML without quoted history and signature (Gmail, Outlook, Apple Mail, Thunderbird, Yahoo quote blocks and the route's reply markers).",
  }),
  signature: z.string().nullable().optional().meta({
    description:
      'The signature split off the reply: after a "-- " line (RFC 3676 §4.3), or a "Sent from my iPhone" / "Get Outlook for Android" line.',
  }),
  forwarded: ForwardedSchema.nullable().optional().meta({
    description:
      'When the message is a forward (inline or as an attached message): who sent the original, and its subject.',
  }),
};

const RecipientDetailSchema = z.object({
  address: z.string(),
  mailboxHash: z
    .string()
    .nullable()
    .meta({ description: 'The plus tag: "abc" for ticket+abc@…, null without one.' }),
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
      recipientDetails: z.array(RecipientDetailSchema).optional().meta({
        description: 'One entry per `recipients` entry, in the same order, with its mailboxHash.',
      }),
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
      truncated: z
        .object({
          text: z.boolean().optional().meta({ description: 'true: `text` (and so `strippedText`) was cut.' }),
          html: z.boolean().optional().meta({ description: 'true: `html` was cut.' }),
        })
        .meta({
          description:
            'The bodies cut to fit the payload caps (`text` and `strippedText` 2 MiB, `html` 2 MiB, the whole payload 16 MiB, counted as JSON); {} when nothing was cut. The raw link always has the full message.',
        }),
      strippedText: z
        .string()
        .nullable()
        .meta({ description: 'The text without quoted history and signature: the reply itself.' }),
      mailboxHash: z.string().nullable().meta({
        description:
          'The plus tag of the first route recipient: "abc" for ticket+abc@…; every recipient\'s is in `route.recipientDetails`.',
      }),
      attachments: z.array(AttachmentSchema),
      ...MessageAdditions,
    }),
    auth: AuthSchema,
    spam: SpamVerdictSchema.optional().meta({
      description:
        "rspamd's verdict against the route's threshold (additive: absent on payloads made before it; every payload from then on has it).",
    }),
    virus: VirusVerdictSchema.optional().meta({
      description:
        "clamd's verdict (additive: absent on payloads made before it; every payload from then on has it).",
    }),
    raw: z.object({
      size: z.number().int().min(0),
      sha256: sha256Hex,
      url: z.string().meta({ description: 'Presigned link to the message as received (RFC 5322).' }),
    }),
    warnings: z.array(z.string()).meta({
      description:
        'Problems met while reading the message, as "code: detail" ("mime_parse_failed: …", "bare_lf", "duplicate: same content and envelope as message <id>" for a copy a sender resent, "invalid_date: …", "auth_limited: …", "payload_capped: …", "scan_unavailable: rspamd timeout" when a scanner gave no verdict, "sender_policy: dnsbl|spf_fail|dmarc_reject" for a sender finding the route only tags, "released: quarantined for …" on a released message). A message whose MIME cannot be parsed, or whose values the schema cannot carry, still arrives: what could be read, null for what could not, and the raw link.',
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
export type WebhookFlags = NonNullable<WebhookMessage['flags']>;
export type WebhookBounce = NonNullable<WebhookMessage['bounce']>;
export type WebhookForwarded = NonNullable<WebhookMessage['forwarded']>;
export type WebhookUnpacked = NonNullable<WebhookAttachment['unpacked']>;
export type WebhookRecipientDetail = NonNullable<WebhookPayload['route']['recipientDetails']>[number];

/** Where the payload schema is published in the repository. */
export const WEBHOOK_PAYLOAD_SCHEMA_PATH = 'schema/webhook-payload.v1.json';

/** The JSON Schema (draft 2020-12) of {@link WebhookPayloadSchema}, as committed under `schema/`. */
export function webhookPayloadJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(WebhookPayloadSchema, { io: 'output' }) as Record<string, unknown>;
}

/** A message of which nothing could be read. */
const EMPTY_MESSAGE: WebhookMessage = {
  messageId: null,
  inReplyTo: null,
  references: [],
  date: null,
  subject: null,
  from: [],
  replyTo: [],
  to: [],
  cc: [],
  headers: [],
  text: null,
  html: null,
  truncated: {},
  strippedText: null,
  mailboxHash: null,
  attachments: [],
};

function pathText(path: readonly PropertyKey[]): string {
  return path
    .map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`))
    .join('')
    .slice(1);
}

/**
 * The payload as the schema accepts it. A message value the schema cannot carry (a date out of
 * range, a value of the wrong type) comes from the sender, so it must not stop the webhook: the
 * field becomes empty (null, []), or the list entry holding it is left out, with an
 * `invalid_value` warning. Anything else wrong is a bug of ours and throws.
 */
export function conformPayload(candidate: WebhookPayload): WebhookPayload {
  let payload = candidate;
  for (let round = 0; round < 3; round++) {
    const result = WebhookPayloadSchema.safeParse(payload);
    if (result.success) return result.data;
    const message: Record<string, unknown> = { ...payload.message };
    const warnings = [...payload.warnings];
    const dropped = new Map<string, Set<number>>();
    for (const issue of result.error.issues) {
      const [root, field, index] = issue.path;
      if (root !== 'message' || typeof field !== 'string' || !(field in EMPTY_MESSAGE)) {
        throw new Error(`payload invalid at ${pathText(issue.path)}: ${issue.message}`);
      }
      warnings.push(`invalid_value: ${pathText(issue.path)}: ${issue.message}; left out`);
      if (typeof index === 'number' && Array.isArray(message[field])) {
        dropped.set(field, (dropped.get(field) ?? new Set()).add(index));
      } else {
        message[field] = EMPTY_MESSAGE[field as keyof WebhookMessage];
      }
    }
    for (const [field, indexes] of dropped) {
      const list = message[field];
      if (Array.isArray(list)) message[field] = list.filter((_, at) => !indexes.has(at));
    }
    payload = { ...payload, message: message as WebhookMessage, warnings };
  }
  throw new Error('payload still invalid after leaving out the values the schema refused');
}
