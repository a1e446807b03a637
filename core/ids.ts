import { createHash } from 'node:crypto';
import { monotonicFactory } from 'ulid';

const nextUlid = monotonicFactory();

/** A new message id: a ULID, so ids sort by the time they were made and never collide. */
export function newMessageId(now: number = Date.now()): string {
  return nextUlid(now);
}

/**
 * The Standard Webhooks `webhook-id` of one (message, route) delivery. Derived, not random, so a
 * job that runs twice, or a message parsed twice, produces the same id and receivers can dedupe.
 */
export function webhookId(messageId: string, routeId: string): string {
  const digest = createHash('sha256').update(`${messageId}\0${routeId}`).digest('base64url');
  return `msg_${digest.slice(0, 32)}`;
}
