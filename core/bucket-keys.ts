import { createHash } from 'node:crypto';

/**
 * The mail bucket's key layout: where each kind of object lives. The writers and readers build keys
 * with the functions below; infra grants each role and sets each lifecycle rule per prefix.
 */
export const BUCKET_PREFIXES = {
  raw: 'raw/',
  payloads: 'payloads/',
  attachments: 'attachments/',
  config: 'config/',
  /** One small object per failing or disabled endpoint; no lifecycle rule, a disabled endpoint stays so. */
  endpointHealth: 'endpoint-health/',
} as const;

/** The key the deployed config is written to and read from. */
export const CONFIG_OBJECT_KEY = `${BUCKET_PREFIXES.config}mailbridge.json`;

/**
 * The key of a multipart upload that never exists, under `raw/` where the listener may abort
 * uploads: the listener's readiness probe aborts it.
 */
export const READINESS_PROBE_KEY = `${BUCKET_PREFIXES.raw}readiness-probe`;

/** Where the raw message lives: `raw/YYYY/MM/DD/<id>.eml`, dated in UTC. */
export function rawObjectKey(messageId: string, receivedAt: Date): string {
  const iso = receivedAt.toISOString();
  return `${BUCKET_PREFIXES.raw}${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${messageId}.eml`;
}

/** `attachments/<messageId>/<index>-<safe name>`: stable across re-runs, so a retry overwrites. */
export function attachmentKey(messageId: string, index: number, filename: string | null): string {
  const safe =
    (filename ?? '')
      .normalize('NFKD')
      .replace(/[^\w.-]+/g, '_')
      .replace(/^[._-]+/, '')
      .slice(-100) || 'attachment';
  return `${BUCKET_PREFIXES.attachments}${messageId}/${index}-${safe}`;
}

/** Whether `key` is the raw object or an attachment of message `messageId` (the layouts above). */
export function isMessageObject(messageId: string, key: string): boolean {
  return (
    (key.startsWith(BUCKET_PREFIXES.raw) && key.endsWith(`/${messageId}.eml`)) ||
    key.startsWith(`${BUCKET_PREFIXES.attachments}${messageId}/`)
  );
}

/** `payloads/<messageId>/`: the stored payloads of one message, one per route. */
export function messagePayloadsPrefix(messageId: string): string {
  return `${BUCKET_PREFIXES.payloads}${messageId}/`;
}

/**
 * Where the payload of one (message, route) is stored when its delivery job cannot carry it (over
 * one SQS message), and where a delivery DLQ entry too large for the DLQ puts it.
 */
export function payloadKey(messageId: string, routeId: string): string {
  return `${messagePayloadsPrefix(messageId)}${routeId}.json`;
}

/** `endpoint-health/<sha256 of the URL>.json`: a fixed-length key whatever the URL holds. */
export function endpointHealthKey(endpoint: string): string {
  return `${BUCKET_PREFIXES.endpointHealth}${createHash('sha256').update(endpoint).digest('hex')}.json`;
}
