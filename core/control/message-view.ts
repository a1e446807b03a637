import { decodeTime } from 'ulid';
import type { MessageDetail, MessageQuery, MessageSummary, TimelineEvent } from './schemas.ts';
import { deriveStatus } from './status.ts';
import type { StoredMessage } from './store.ts';

/** Lowercased words of a subject, for `q`: letters and digits of any script. */
export function subjectWords(subject: string): string[] {
  return [...new Set(subject.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])];
}

/** How a MAIL FROM is indexed: lowercased, `<>` for the null sender (RFC 5321 §4.5.5), never empty. */
export function senderKey(mailFrom: string): string {
  return mailFrom === '' ? '<>' : mailFrom.toLowerCase();
}

function find<T extends TimelineEvent['type']>(
  timeline: readonly TimelineEvent[],
  type: T,
): Extract<TimelineEvent, { type: T }> | undefined {
  // The latest wins: a replay parses again.
  for (let i = timeline.length - 1; i >= 0; i--) {
    const event = timeline[i]!;
    if (event.type === type) return event as Extract<TimelineEvent, { type: T }>;
  }
  return undefined;
}

/** Route ids a message was queued or tried for. */
export function messageRoutes(timeline: readonly TimelineEvent[]): string[] {
  const routes = new Set<string>();
  for (const event of timeline) {
    if (event.type === 'parsed' || event.type === 'retried')
      for (const job of event.jobs) routes.add(job.route);
    else if ('route' in event && event.route) routes.add(event.route);
  }
  return [...routes];
}

/** The list view of a stored message: envelope from `received`, subject from `parsed`, status from all. */
export function summarize(message: StoredMessage): MessageSummary {
  const received = find(message.timeline, 'received');
  const parsed = find(message.timeline, 'parsed');
  return {
    id: message.id,
    receivedAt: received?.at ?? new Date(decodeTime(message.id)).toISOString(),
    mailFrom: received?.mailFrom ?? null,
    rcptTo: received?.rcptTo ?? [],
    subject: parsed?.subject ?? null,
    size: received?.size ?? null,
    status: deriveStatus(message.timeline),
  };
}

export function detail(message: StoredMessage, rawUrl: string | null): MessageDetail {
  return {
    ...summarize(message),
    from: find(message.timeline, 'parsed')?.from ?? null,
    routes: messageRoutes(message.timeline),
    timeline: message.timeline,
    raw: rawUrl === null ? null : { url: rawUrl },
  };
}

/** Whether a message passes every filter of a list query (the store narrows first by index). */
export function matchesQuery(message: StoredMessage, query: MessageQuery): boolean {
  const summary = summarize(message);
  if (query.recipient && !summary.rcptTo.some((to) => to.toLowerCase() === query.recipient)) return false;
  if (query.sender && (summary.mailFrom === null || senderKey(summary.mailFrom) !== query.sender))
    return false;
  if (query.status && summary.status !== query.status) return false;
  const receivedAt = Date.parse(summary.receivedAt);
  if (query.since && receivedAt < Date.parse(query.since)) return false;
  if (query.until && receivedAt > Date.parse(query.until)) return false;
  if (query.route && !messageRoutes(message.timeline).includes(query.route)) return false;
  if (query.q) {
    const words = new Set(subjectWords(summary.subject ?? ''));
    if (!subjectWords(query.q).every((word) => words.has(word))) return false;
  }
  return true;
}
