import * as z from 'zod';
import { parseSenderEntry } from './senders.ts';

const seconds = (fallback: number, description: string) =>
  z
    .number()
    .positive()
    .default(fallback)
    .meta({ description: `${description} In seconds.` });

const action = z.enum(['reject', 'quarantine', 'tag']);

/**
 * The content scanners, top level (`scanners:`). Both are off by default: no verdict is computed
 * and every payload says `unavailable`.
 */
export const ScannersConfigSchema = z
  .strictObject({
    rspamd: z
      .strictObject({
        url: z.url().default('http://127.0.0.1:11333').meta({
          description: "rspamd's normal worker; the message is POSTed to `/checkv2` as it streams in.",
        }),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(20 * 1024 * 1024)
          .meta({
            description:
              'Larger messages are not spam-scanned (verdict `unavailable`, reason `too_large`); rspamd holds each message whole.',
          }),
        maxConcurrent: z.number().int().min(1).default(32).meta({
          description:
            'Messages scanned at once; more get `unavailable` (reason `busy`) at once rather than queueing behind an overloaded scanner.',
        }),
      })
      .nullable()
      .default(null)
      .meta({ description: 'Spam scoring by rspamd. null: off.' }),
    clamd: z
      .strictObject({
        host: z.string().default('127.0.0.1').meta({ description: "clamd's TCP address." }),
        port: z.number().int().min(1).max(65535).default(3310).meta({ description: "clamd's TCP port." }),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(64 * 1024 * 1024)
          .meta({
            description:
              "clamd's StreamMaxLength: only this much is streamed; a longer message is `infected` if the part sent is, else `unavailable` (reason `too_large`).",
          }),
        maxConcurrent: z.number().int().min(1).default(32).meta({
          description:
            'Messages scanned at once; more get `unavailable` (reason `busy`) at once rather than queueing behind an overloaded scanner.',
        }),
      })
      .nullable()
      .default(null)
      .meta({ description: 'Malware scanning by clamd (INSTREAM). null: off.' }),
    budget: seconds(
      5,
      'How long verdicts may take after the end of DATA; past it a scanner is cut off and its verdict is `unavailable`.',
    ),
    stall: seconds(
      2,
      'How long a scanner may refuse to take more bytes while DATA streams; past it the scanner is cut off for that message, so it never holds up the upload.',
    ),
  })
  .prefault({});
export type ScannersConfig = z.output<typeof ScannersConfigSchema>;

/** DNS blocklists consulted at connect, top level (`dnsbl:`). No zones by default. */
export const DnsblConfigSchema = z
  .strictObject({
    zones: z
      .array(
        z.strictObject({
          zone: z.string().min(1).meta({ description: 'DNSBL zone, e.g. "zen.spamhaus.org".' }),
          weight: z
            .number()
            .default(1)
            .meta({ description: 'Added to the score when the client is listed.' }),
        }),
      )
      .default([])
      .meta({
        description: 'Zones queried for every client address (IPv4 octets or IPv6 nibbles reversed).',
      }),
    threshold: z.number().positive().default(1).meta({
      description: 'Listed when the weights of the zones that list the client add up to at least this.',
    }),
    action: z.enum(['refuse', 'tag']).default('refuse').meta({
      description:
        '"refuse": 550 5.7.1 naming the zones at the first RCPT (unless the route allows the sender); "tag": accept and say so.',
    }),
    timeout: seconds(
      2,
      'Longest wait for the zones to answer; a zone that has not answered counts as not listing.',
    ),
    cacheTtl: seconds(300, 'How long a listing is reused.'),
    negativeCacheTtl: seconds(60, 'How long "not listed" is reused.'),
  })
  .prefault({});
export type DnsblConfig = z.output<typeof DnsblConfigSchema>;

const perMinute = (description: string) =>
  z
    .number()
    .int()
    .min(1)
    .nullable()
    .default(null)
    .meta({ description: `${description} null: no limit.` });

/**
 * Per-client-address rate limits beyond the concurrency cap. They live in the config's `limits`
 * section beside the connection caps (core/config.ts spreads these fields into it).
 */
export const RATE_LIMIT_FIELDS = {
  connectionsPerMinute: perMinute('New sessions per client address per minute; then 421 4.7.0 at connect.'),
  messagesPerMinute: perMinute('MAIL FROM per client address per minute; then 450 4.7.1 for that message.'),
  failedRecipientsPerSession: z.number().int().min(1).default(20).meta({
    description:
      'Refused RCPTs in one session (a dictionary attack); the next gets 421 4.7.0 and the session ends.',
  }),
  maxAuthFailuresPerIp: z.number().int().min(1).default(5).meta({
    description:
      'Failed AUTH tries per client address within authFailureWindow; then 421 4.7.0 at AUTH and at connect to the AUTH ports until the window has passed.',
  }),
  authFailureWindow: seconds(900, 'Window the AUTH failures of an address are counted over.'),
  trackedAddresses: z.number().int().min(100).default(10_000).meta({
    description: 'Client addresses remembered per rate limit; the least recently seen are forgotten first.',
  }),
};

/** The rate limits alone (what the listener's SessionGuard reads). */
export const RateLimitsConfigSchema = z.strictObject(RATE_LIMIT_FIELDS).prefault({});
export type RateLimitsConfig = z.output<typeof RateLimitsConfigSchema>;

const senderEntry = z.string().transform((value, ctx) => {
  const entry = parseSenderEntry(value);
  if (!entry) {
    ctx.addIssue({ code: 'custom', message: `not an address, domain, IP or CIDR: ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return entry;
});

/** A route's filtering policy (`routes[].filtering`). Every action defaults to delivering. */
export const RouteFilteringSchema = z
  .strictObject({
    spam: z
      .strictObject({
        threshold: z.number().default(6).meta({
          description:
            'rspamd score at or above which the verdict is `spam` (rspamd\'s own "add header" level).',
        }),
        action: action.default('tag').meta({ description: 'What a `spam` verdict does.' }),
        rejectThreshold: z.number().nullable().default(null).meta({
          description: 'Score at or above which the message is refused whatever `action` says. null: never.',
        }),
      })
      .prefault({}),
    virus: z
      .strictObject({
        action: action.default('reject').meta({ description: 'What an `infected` verdict does.' }),
      })
      .prefault({}),
    onUnavailable: z.enum(['tag', 'quarantine']).default('tag').meta({
      description:
        'When a scanner is off, down or past its budget: deliver with verdict `unavailable`, or hold it.',
    }),
    senders: z
      .strictObject({
        allow: z.array(senderEntry).default([]).meta({
          description:
            'Senders never refused or quarantined for spam, DNSBL, SPF or DMARC (viruses still are): "user@domain", "domain" (and its subdomains), an IP or a CIDR.',
        }),
        block: z.array(senderEntry).default([]).meta({
          description: 'Senders refused at RCPT with 550 5.7.1; same forms as `allow`.',
        }),
      })
      .prefault({}),
    spf: z
      .strictObject({
        fail: z.enum(['accept', 'tag', 'refuse']).default('accept').meta({
          description:
            'SPF `fail` of the MAIL FROM domain, known at MAIL FROM: "refuse" answers 550 5.7.23 at RCPT.',
        }),
      })
      .prefault({}),
    dmarc: z
      .strictObject({
        reject: z.enum(['accept', 'tag', 'refuse']).default('accept').meta({
          description:
            'DMARC `fail` of a From domain that publishes p=reject, known at the end of DATA (SPF and DKIM): "refuse" answers 550 5.7.1.',
        }),
      })
      .prefault({}),
  })
  .prefault({});
export type RouteFiltering = z.output<typeof RouteFilteringSchema>;

/**
 * Why a scanner gave no verdict: off, past the budget, cut off while DATA streamed, failed, too
 * large, or already scanning as many messages as it may.
 */
export const UnavailableReasonSchema = z.enum([
  'disabled',
  'timeout',
  'stalled',
  'error',
  'too_large',
  'busy',
]);

const unavailable = z.object({
  status: z.literal('unavailable'),
  reason: UnavailableReasonSchema,
  detail: z.string().optional(),
});

const SymbolSchema = z.object({ name: z.string(), score: z.number() });

/** What rspamd said about one message, before any route's threshold is applied. */
export const SpamScanSchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('scanned'),
    score: z.number(),
    /** rspamd's own action (`no action`, `add header`, `reject`, …), for the log. */
    action: z.string(),
    symbols: z.array(SymbolSchema),
  }),
  unavailable,
]);

/** What clamd said about one message. */
export const VirusScanSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('scanned'), infected: z.boolean(), names: z.array(z.string()) }),
  unavailable,
]);

/** The payload's `spam` object: the scan judged against the route's threshold. */
export const SpamVerdictSchema = z
  .object({
    verdict: z.enum(['ham', 'spam', 'unavailable']).meta({
      description:
        '"unavailable": no score (no scanner configured, or it was down, busy or past its time budget; `warnings` says which).',
    }),
    score: z.number().nullable().meta({ description: "rspamd's score; null when unavailable." }),
    threshold: z
      .number()
      .meta({ description: "The route's `filtering.spam.threshold`: spam at or above it." }),
    symbols: z.array(SymbolSchema).meta({
      description: 'The rules that matched, strongest first (at most 50), with their scores.',
    }),
  })
  .meta({ description: 'The spam verdict of rspamd for this route.' });

/** The payload's `virus` object. */
export const VirusVerdictSchema = z
  .object({
    verdict: z.enum(['clean', 'infected', 'unavailable']),
    names: z
      .array(z.string())
      .meta({ description: "The signatures clamd found (e.g. 'Eicar-Test-Signature')." }),
  })
  .meta({ description: 'The malware verdict of clamd.' });

/**
 * What the listener decided before its `250` (the InboundEvent's `filtering`): both scans as the
 * scanners gave them, and per route id what to do with that route's copy with every reason found
 * (scan findings and the sender facts of RCPT: `dnsbl`, `spf_fail`). A route absent here (added
 * after the message was received) is delivered, its verdicts `unavailable`.
 */
export const FilteringFactsSchema = z.object({
  spam: SpamScanSchema,
  virus: VirusScanSchema,
  routes: z.record(
    z.string(),
    z.object({ action: z.enum(['deliver', 'quarantine']), reasons: z.array(z.string()) }),
  ),
  /** Set on a quarantined message released for delivery: its `quarantine` actions no longer hold it. */
  released: z.boolean().optional(),
});
export type FilteringFacts = z.infer<typeof FilteringFactsSchema>;
