import * as z from 'zod';
import { ConfigSchema } from '../config.ts';
import { FilteringFactsSchema } from '../filtering/schemas.ts';
import { subjectWords } from './message-view.ts';

/**
 * The control plane's data, one source for the TypeScript types, request validation and the
 * OpenAPI document (see openapi.ts). Times are ISO 8601 in UTC.
 */

const at = z.iso.datetime().meta({ description: 'When it happened (ISO 8601, UTC).' });
const messageId = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{26}$/, 'a message id (ULID)');

/** Who asked for a retry or a replay: an API key id, or `cli` for the command line with AWS credentials. */
export const ActorSchema = z
  .string()
  .regex(/^(?:cli|key_[0-9a-f]{16})$/, 'an API key id or "cli"')
  .meta({ description: 'The API key id that asked, or "cli" for the command line.' });

/** One delivery job: a (route, endpoint) pair of a message; `webhookId` is what the receiver sees. */
const JobFields = {
  route: z.string().meta({ description: 'Route id.' }),
  endpoint: z.string().meta({ description: 'Webhook URL.' }),
  webhookId: z
    .string()
    .meta({ description: 'The `webhook-id` header of this delivery (same on every try).' }),
};
export const JobRefSchema = z.object(JobFields);
export type JobRef = z.infer<typeof JobRefSchema>;

export const ReceivedEventSchema = z
  .object({
    at,
    type: z.literal('received'),
    mailFrom: z.string().meta({ description: 'SMTP MAIL FROM ("" for a null sender).' }),
    rcptTo: z.array(z.string()).meta({ description: 'SMTP RCPT TO, as accepted.' }),
    size: z.number().int().min(0).meta({ description: 'Bytes stored, trace header included.' }),
    remoteAddress: z.string(),
    helo: z.string(),
    tls: z.boolean().meta({ description: 'Whether the session was encrypted.' }),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional()
      .meta({ description: 'SHA-256 of the bytes stored, as the listener computed it.' }),
    filtering: FilteringFactsSchema.optional().meta({
      description:
        "What the listener's filtering found before the 250: the spam and virus scans (rspamd's score and action, clamd's findings, or why a scanner gave none) and per route id whether its copy is delivered or quarantined, with the reasons. Absent when no filtering ran. A retry or release re-parses the message with these facts.",
    }),
  })
  .meta({ description: 'The listener stored the message and answered 250.' });

export const ParsedEventSchema = z
  .object({
    at,
    type: z.literal('parsed'),
    subject: z.string().nullable(),
    from: z.string().nullable().meta({ description: 'The From: address.' }),
    jobs: z.array(JobRefSchema).meta({ description: 'The deliveries queued: one per (route, endpoint).' }),
    unrouted: z
      .array(z.string())
      .meta({ description: 'Recipients no route took at parse time (the route was removed after RCPT).' }),
    warnings: z.array(z.string()),
  })
  .meta({ description: 'The parse function read, authenticated and parsed the message.' });

export const AttemptEventSchema = z
  .object({
    at,
    type: z.literal('attempt'),
    ...JobFields,
    attempt: z.number().int().min(1).meta({ description: 'Try number, from 1.' }),
    status: z.number().int().nullable().meta({ description: 'HTTP status; null when none came back.' }),
    error: z
      .object({
        class: z.string().meta({ description: 'e.g. "timeout", "network", "http", "ssrf_blocked".' }),
        text: z.string(),
      })
      .nullable(),
    durationMs: z.number().min(0),
  })
  .meta({ description: 'One signed POST to an endpoint.' });

export const RetryScheduledEventSchema = z
  .object({
    at,
    type: z.literal('retry_scheduled'),
    ...JobFields,
    attempt: z.number().int().min(2).meta({ description: 'The try that will run.' }),
    nextAttemptAt: z.iso.datetime(),
  })
  .meta({ description: 'A try failed in a way worth retrying; the next one is scheduled.' });

export const DeliveredEventSchema = z
  .object({ at, type: z.literal('delivered'), ...JobFields, status: z.number().int() })
  .meta({ description: 'The endpoint answered 2xx.' });

export const DeadLetteredEventSchema = z
  .object({
    at,
    type: z.literal('dead_lettered'),
    ...JobFields,
    reason: z.string().meta({ description: 'e.g. "exhausted", "permanent", "parked".' }),
    status: z.number().int().nullable(),
    error: z.string().nullable(),
  })
  .meta({ description: 'The job went to the delivery DLQ with its last error.' });

export const RetriedEventSchema = z
  .object({
    at,
    type: z.literal('retried'),
    by: ActorSchema,
    route: z.string().nullable().meta({ description: 'The route retried; null for every route.' }),
    jobs: z.array(JobRefSchema).meta({
      description:
        'The deliveries sent again as they were (`mailbridge dlq redrive` of a delivery job). Empty when the message went back through parse, which builds its deliveries by the routes in force then: the `parsed` event that follows lists them.',
    }),
    reparse: z.boolean().optional().meta({
      description:
        "true (API retry and release): parse builds the deliveries of `route` (every route when null) again, and they replace that route's earlier ones; until its `parsed` event the message is not settled. Absent for `mailbridge dlq redrive`, whose inbound entry is parsed again for its own recipients only.",
    }),
    release: z
      .boolean()
      .optional()
      .meta({ description: 'true: a quarantined message released for delivery.' }),
  })
  .meta({ description: 'Delivery was asked again (API or CLI).' });

export const ReplayedEventSchema = z
  .object({
    at,
    type: z.literal('replayed'),
    by: ActorSchema,
    route: z.string().nullable(),
  })
  .meta({ description: 'The raw message was put through parse again.' });

export const QuarantinedEventSchema = z
  .object({
    at,
    type: z.literal('quarantined'),
    route: z.string().meta({ description: 'The route whose copy is held.' }),
    reasons: z.array(z.string()).meta({
      description:
        'Why: "spam", "virus", "scanner_unavailable", "dmarc_reject", "refused_for_route" (this route refused it, another took it), and sender findings ("dnsbl", "spf_fail").',
    }),
  })
  .meta({
    description:
      "The route's filtering policy held its copy back: stored, not delivered, until it is released.",
  });

export const ParseFailedEventSchema = z
  .object({
    at,
    type: z.literal('parse_failed'),
    tries: z.number().int().meta({ description: 'The tries parse made, the last one included.' }),
    error: z.string().meta({ description: 'The last error.' }),
  })
  .meta({
    description:
      'Parse failed on its last try: the message is in the inbound DLQ with its raw copy, until `mailbridge dlq redrive` sends it back.',
  });

export const TimelineEventSchema = z.discriminatedUnion('type', [
  ReceivedEventSchema,
  ParsedEventSchema,
  AttemptEventSchema,
  RetryScheduledEventSchema,
  DeliveredEventSchema,
  DeadLetteredEventSchema,
  RetriedEventSchema,
  ReplayedEventSchema,
  QuarantinedEventSchema,
  ParseFailedEventSchema,
]);
export type TimelineEvent = z.infer<typeof TimelineEventSchema>;
export type TimelineEventType = TimelineEvent['type'];

export const MESSAGE_STATUSES = [
  'received',
  'parsed',
  'delivering',
  'delivered',
  'failed',
  'partially_delivered',
  'quarantined',
] as const;
export const MessageStatusSchema = z.enum(MESSAGE_STATUSES).meta({
  description:
    '"failed": every delivery is in the DLQ; "partially_delivered": some delivered, the rest in the DLQ; "quarantined": held back by its routes\' filtering, nothing queued; derived from the timeline.',
});
export type MessageStatus = z.infer<typeof MessageStatusSchema>;

export const MessageSummarySchema = z.object({
  id: messageId,
  receivedAt: at,
  mailFrom: z.string().nullable().meta({ description: 'null while the received event is not logged.' }),
  rcptTo: z.array(z.string()),
  subject: z.string().nullable(),
  size: z.number().int().nullable(),
  status: MessageStatusSchema,
});
export type MessageSummary = z.infer<typeof MessageSummarySchema>;

export const MessageDetailSchema = MessageSummarySchema.extend({
  from: z.string().nullable(),
  routes: z.array(z.string()),
  timeline: z.array(TimelineEventSchema).meta({ description: 'Oldest first.' }),
  raw: z
    .object({ url: z.string().meta({ description: 'A short-lived link to the message as received.' }) })
    .nullable(),
});
export type MessageDetail = z.infer<typeof MessageDetailSchema>;

const limit = z.coerce.number().int().min(1).max(100).default(50);
const cursor = z
  .string()
  .min(1)
  .max(2000)
  .optional()
  .meta({ description: 'nextCursor of the previous page.' });

export const PageQuerySchema = z.strictObject({ limit, cursor });

export const MessageQuerySchema = z.strictObject({
  recipient: z.string().trim().toLowerCase().min(1).optional(),
  sender: z.string().trim().toLowerCase().min(1).optional(),
  status: MessageStatusSchema.optional(),
  since: z.iso.datetime().optional(),
  until: z.iso.datetime().optional(),
  route: z.string().min(1).optional(),
  q: z
    .string()
    .trim()
    .min(1)
    .max(200)
    // Without a word (letters or digits) it would match every message.
    .refine((q) => subjectWords(q).length > 0, 'no word to look for: letters or digits')
    .optional()
    .meta({ description: 'Words that must all be in the subject.' }),
  limit,
  cursor,
});
export type MessageQuery = z.output<typeof MessageQuerySchema>;

export const RetryRequestSchema = z.strictObject({
  route: z.string().min(1).optional().meta({ description: 'Only this route; every route when absent.' }),
});

export const RetryResponseSchema = z.object({
  messageId,
  jobs: z.array(JobRefSchema).meta({
    description:
      "Empty: the message goes back through parse, which builds its deliveries by the routes in force then; they show in the message's timeline, in the `parsed` event that follows the `retried` one.",
  }),
});

/** An SMTP refusal: at MAIL FROM, at RCPT, or at the end of DATA (one per recipient); bounded: see the log writer's caps. */
export const RefusalSchema = z.object({
  at,
  recipient: z.string(),
  mailFrom: z.string(),
  remoteAddress: z.string(),
  reply: z
    .string()
    .meta({ description: 'The SMTP reply sent, e.g. "550 5.1.1 Mailbox <x@y> does not exist".' }),
});
export type Refusal = z.infer<typeof RefusalSchema>;

export const RefusalQuerySchema = z.strictObject({
  since: z.iso.datetime().optional().meta({ description: 'Default: one hour ago.' }),
  recipient: z.string().trim().toLowerCase().min(1).optional(),
  limit,
  cursor,
});
export type RefusalQuery = z.output<typeof RefusalQuerySchema>;

export const ActivityQuerySchema = z.strictObject({
  since: z.iso
    .datetime()
    .optional()
    .meta({ description: 'Default: one minute ago. Activity is kept a day.' }),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor,
});

/** A follow-up write to a message's log (a retry scheduled or tried, a dead letter, parse given up, a retry, release or replay asked). */
export const ActivitySchema = z.object({
  messageId,
  at: at.meta({ description: 'The time of the latest event the write added.' }),
});
export type Activity = z.infer<typeof ActivitySchema>;

const ConfigRouteSchema = ConfigSchema.shape.routes.element;
const routeId = ConfigRouteSchema.shape.id;

/** A route as the API takes it: the config file's route fields, less the secret, which the API makes. */
export const RouteInputSchema = ConfigRouteSchema.omit({ secret: true }).extend({
  id: routeId.optional().meta({ description: 'Stable route id; generated when absent.' }),
});
export type RouteInput = z.output<typeof RouteInputSchema>;

/** A signing secret's metadata; the value is shown once, when it is made. */
export const SigningSecretInfoSchema = z.object({
  id: z.string(),
  createdAt: at,
  expiresAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'When a rotated-out secret stops signing; null while current.' }),
});
export type SigningSecretInfo = z.infer<typeof SigningSecretInfoSchema>;

export const RouteViewSchema = ConfigRouteSchema.omit({ secret: true }).extend({
  // Durations as stored: seconds.
  retrySchedule: z.array(z.number()).meta({ description: 'Seconds between tries after the first.' }),
  timeout: z.number().meta({ description: 'Per-try request timeout, seconds.' }),
  disableAfter: z
    .number()
    .nullable()
    .meta({ description: 'Seconds of failing tries before the endpoint is disabled.' }),
  source: z.enum(['config', 'api']).meta({ description: 'Config routes are read-only.' }),
  revision: z.number().int().meta({ description: 'Send it back as If-Match to update safely.' }),
  createdAt: at.nullable().meta({
    description:
      'When the API route was made: of two routes equally specific for an address, the older takes it (config routes, null, come first).',
  }),
  signingSecrets: z.array(SigningSecretInfoSchema),
});
export type RouteView = z.output<typeof RouteViewSchema>;

export const CreatedRouteSchema = RouteViewSchema.extend({
  signingSecret: z.string().meta({ description: 'whsec_… — shown only in this answer.' }),
});

export const RotateSecretRequestSchema = z.strictObject({
  overlapSeconds: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .default(86400)
    .meta({
      description:
        'How long, at most, the older secrets keep signing alongside the new one; 0 stops them at once (a secret that leaked).',
    }),
});

const domainName = ConfigSchema.shape.domains.element;

export const DomainRecordSchema = z.object({
  type: z.enum(['MX', 'TXT']),
  name: z.string(),
  value: z.string(),
});
export type DomainRecord = z.infer<typeof DomainRecordSchema>;

export const DomainViewSchema = z.object({
  name: z.string(),
  status: z.enum(['pending', 'verified']),
  source: z.enum(['config', 'api']),
  records: z
    .array(DomainRecordSchema)
    .meta({ description: 'What to publish in DNS: the MX, and the TXT proof.' }),
});
export type DomainView = z.infer<typeof DomainViewSchema>;

export const DomainInputSchema = z.strictObject({
  name: domainName.refine((name) => !name.startsWith('*.'), 'one domain, not a wildcard'),
});

export const KeyScopeSchema = z
  .enum(['read', 'full'])
  .meta({ description: '"read": GET only; "full": everything, including creating keys.' });
export type KeyScope = z.infer<typeof KeyScopeSchema>;

export const KeyViewSchema = z.object({
  id: z.string(),
  name: z.string(),
  scope: KeyScopeSchema,
  createdAt: at,
});
export type KeyView = z.infer<typeof KeyViewSchema>;

export const KeyInputSchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  scope: KeyScopeSchema.default('read'),
});

export const CreatedKeySchema = KeyViewSchema.extend({
  secret: z.string().meta({ description: 'mbk_… — shown only in this answer; send it as a Bearer token.' }),
});

export const ErrorSchema = z.object({
  error: z.object({
    code: z.string().meta({ description: 'Stable, for programs: e.g. "validation_failed", "conflict".' }),
    message: z.string().meta({ description: 'For people; names the bad field.' }),
  }),
});

/** A page of a list: `nextCursor` is null on the last page. */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}
