import { createHash } from 'node:crypto';
import type { Route } from './config.ts';
import {
  type DeliveryJob,
  DeliveryJobSchema,
  INLINE_JOB_BYTES,
  type InboundEvent,
  type JobPayload,
  sqsJson,
} from './events.ts';
import type { routeOutcome } from './filtering/index.ts';
import { webhookId } from './ids.ts';
import { conformPayload, type WebhookAttachment, type WebhookAuth, type WebhookPayload } from './payload.ts';
import { parseAddress } from './routes.ts';
import { fitPayload, jsonByteLength, linkPlaceholder } from './stored-payload.ts';

/** An attachment parse stored: its payload fields, its key, and its bytes when kept for inlining. */
export type StoredFile = Omit<WebhookAttachment, 'content' | 'url'> & {
  readonly key: string;
  readonly bytes?: Buffer | undefined;
};

/** What parse read from the raw message, the same for every route. */
export interface ReadMessageFacts {
  readonly size: number;
  readonly sha256: string;
  readonly auth: WebhookAuth;
  readonly attachments: readonly StoredFile[];
}

/** One route's share of a message: the route and the recipients it takes. */
export interface RouteGroup {
  readonly route: Route;
  readonly recipients: string[];
}

/**
 * The fingerprint of a message for duplicate marking: its content (trace header left out) and
 * envelope. A sender that saw no `250` (a timeout, a cut connection) sends the same again.
 */
export function messageFingerprint(contentSha256: string, envelope: InboundEvent['envelope']): string {
  const recipients = envelope.rcptTo.map((address) => address.toLowerCase()).sort();
  return createHash('sha256')
    .update(JSON.stringify([contentSha256, envelope.mailFrom.toLowerCase(), recipients]))
    .digest('hex');
}

/** A route's attachments: inline (base64) when it asks for that and they fit its limit, else linked. */
function routeAttachments(stored: readonly StoredFile[], route: Route, bucket: string): WebhookAttachment[] {
  return stored.map(({ key, bytes, ...meta }) =>
    route.attachments.mode === 'inline' && bytes && meta.size <= route.attachments.inlineLimitBytes
      ? { ...meta, content: bytes.toString('base64') }
      : { ...meta, url: linkPlaceholder({ bucket, key }) },
  );
}

/**
 * The payload of one route, within the schema (what it cannot carry left out, see
 * {@link conformPayload}) and the size caps (see {@link fitPayload}); its links are placeholders
 * the deliver function signs at each try.
 */
export function routePayload(input: {
  readonly event: InboundEvent;
  readonly read: ReadMessageFacts;
  readonly group: RouteGroup;
  readonly message: Omit<WebhookPayload['message'], 'attachments' | 'mailboxHash'>;
  readonly routeDetails: Pick<WebhookPayload['route'], 'recipientDetails'>;
  readonly bucket: string;
  readonly warnings: readonly string[];
  readonly filtering: ReturnType<typeof routeOutcome>;
}): WebhookPayload {
  const { event, read, group, bucket, filtering } = input;
  const { route, recipients } = group;
  const payload: WebhookPayload = {
    type: 'email.received',
    version: 1,
    id: event.id,
    receivedAt: event.receivedAt,
    route: { id: route.id, recipients, ...input.routeDetails },
    envelope: {
      mailFrom: event.envelope.mailFrom,
      rcptTo: recipients,
      helo: event.envelope.helo,
      remoteAddress: event.envelope.remoteAddress,
      tls: event.envelope.tls,
    },
    message: {
      ...input.message,
      mailboxHash: parseAddress(recipients[0]!)?.mailboxHash ?? null,
      attachments: routeAttachments(read.attachments, route, bucket),
    },
    auth: read.auth,
    spam: filtering.spam,
    virus: filtering.virus,
    raw: { size: read.size, sha256: read.sha256, url: linkPlaceholder(event.raw) },
    warnings: [...input.warnings, ...filtering.warnings],
  };
  return fitPayload(conformPayload(payload), (index) =>
    linkPlaceholder({ bucket, key: read.attachments[index]!.key }),
  );
}

/**
 * The payload inside a route's jobs when the longest of them fits {@link INLINE_JOB_BYTES} (no S3
 * write); undefined when it must be stored. The size is counted before any JSON text is built, so
 * a large payload is never one string in memory.
 */
export function inlinePayload(
  group: RouteGroup,
  messageId: string,
  payload: WebhookPayload,
): JobPayload | undefined {
  if (jsonByteLength(payload) >= INLINE_JOB_BYTES) return undefined;
  const inline: JobPayload = { inline: payload as unknown as Record<string, unknown> };
  const longest = group.route.endpoints.reduce((a, b) => (a.length >= b.length ? a : b));
  const [job] = routeJobs(group, messageId, inline, [longest]);
  return Buffer.byteLength(sqsJson(job)) <= INLINE_JOB_BYTES ? inline : undefined;
}

/** One job per endpoint of the route, all with the route's webhook id (the same on every re-run). */
export function routeJobs(
  group: RouteGroup,
  messageId: string,
  payload: JobPayload,
  endpoints: readonly string[] = group.route.endpoints,
): DeliveryJob[] {
  const { route, recipients } = group;
  return endpoints.map((endpoint) =>
    DeliveryJobSchema.parse({
      version: 1,
      messageId,
      routeId: route.id,
      endpoint,
      recipients,
      payload,
      webhookId: webhookId(messageId, route.id),
    }),
  );
}
