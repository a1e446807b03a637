import { createHash } from 'node:crypto';
import { monotonicFactory } from 'ulid';

const nextUlid = monotonicFactory();

/** A new message id: a ULID, so ids sort by the time they were made and never collide. */
export function newMessageId(now: number = Date.now()): string {
  return nextUlid(now);
}

/** Where the raw message lives: `raw/YYYY/MM/DD/<id>.eml`, dated in UTC. */
export function rawObjectKey(messageId: string, receivedAt: Date): string {
  const iso = receivedAt.toISOString();
  return `raw/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${messageId}.eml`;
}

/** `attachments/<messageId>/<index>-<safe name>`: stable across re-runs, so a retry overwrites. */
export function attachmentKey(messageId: string, index: number, filename: string | null): string {
  const safe =
    (filename ?? '')
      .normalize('NFKD')
      .replace(/[^\w.-]+/g, '_')
      .replace(/^[._-]+/, '')
      .slice(-100) || 'attachment';
  return `attachments/${messageId}/${index}-${safe}`;
}

/** Whether `key` is the raw object or an attachment of message `messageId` (the layouts above). */
export function isMessageObject(messageId: string, key: string): boolean {
  return (
    (key.startsWith('raw/') && key.endsWith(`/${messageId}.eml`)) ||
    key.startsWith(`attachments/${messageId}/`)
  );
}

/**
 * The Standard Webhooks `webhook-id` of one (message, route) delivery. Derived, not random, so a
 * job that runs twice, or a message parsed twice, produces the same id and receivers can dedupe.
 */
export function webhookId(messageId: string, routeId: string): string {
  const digest = createHash('sha256').update(`${messageId}\0${routeId}`).digest('base64url');
  return `msg_${digest.slice(0, 32)}`;
}

/**
 * Where the payload of one (message, route) is stored when its delivery job cannot carry it (over
 * one SQS message), and where a delivery DLQ entry too large for the DLQ puts it.
 */
export function payloadKey(messageId: string, routeId: string): string {
  return `payloads/${messageId}/${routeId}.json`;
}
