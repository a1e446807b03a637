import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import {
  type ApiClient,
  ApiClientError,
  ApiUnreachableError,
  awaitsFollowUp,
  type MessageSummary,
  type Refusal,
  type TimelineEvent,
} from '../core/control/index.ts';
import { DeliveryDlqBodySchema, parseQueueBody } from '../core/index.ts';
import type { MessageEvent, MessageEventReader } from '../dev/index.ts';
import { apiInUse, explainApiError, withApiAccessOptions } from './api.ts';
import { type Connection, type ConnectionOptions, connect, withConnectionOptions } from './connection.ts';
import { CliError, positiveInt, seconds } from './output.ts';
import { peek } from './queue.ts';

interface TailOptions extends ConnectionOptions {
  apiUrl?: string;
  apiKey?: string;
  interval: number;
  count?: number;
  timeout?: number;
  json?: boolean;
}

/**
 * How long after its id was made a message may first show in the log: its `received` event is
 * written once the raw message is stored and queued, so a large or slow one lands late.
 */
const LOG_LAG_MS = 60_000;
/** Pages of each list read per poll: a burst beyond that is not all followed. */
const MAX_PAGES_PER_POLL = 10;
/** Nothing more happens to these unless delivery is asked again, which the activity list shows. */
const SETTLED: ReadonlySet<MessageSummary['status'] | null> = new Set([
  'delivered',
  'failed',
  'partially_delivered',
  'quarantined',
]);

/** An SMTP refusal of one recipient (or of a MAIL FROM), as tail prints it among the message events. */
type RefusalLine = { kind: 'refused' } & Refusal;

/** What tail prints: message events, and with an API the refusals too. */
interface TailReader {
  read(): Promise<(MessageEvent | RefusalLine)[]>;
  close(): Promise<void>;
}

/** One line for people, beside `formatMessageEvent`'s and like the local runtime's console: `12:00:01 refused   <a@b.test> 550 5.1.1 … (from 192.0.2.1)`. */
function formatRefusal(refusal: RefusalLine): string {
  const refused = refusal.recipient ? `<${refusal.recipient}>` : `MAIL FROM <${refusal.mailFrom}>`;
  return `${refusal.at.slice(11, 19)} refused   ${refused} ${refusal.reply} (from ${refusal.remoteAddress})`;
}

/** The items of up to {@link MAX_PAGES_PER_POLL} pages of a list. */
async function allPages<T>(
  page: (cursor: { cursor?: string }) => Promise<{ items: T[]; nextCursor: string | null }>,
): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let n = 0; n < MAX_PAGES_PER_POLL; n++) {
    const answer = await page(cursor ? { cursor } : {});
    items.push(...answer.items);
    if (!answer.nextCursor) break;
    cursor = answer.nextCursor;
  }
  return items;
}

/** The try of one delivery (by webhook id) an event reports on: the latest up to its time. */
function triedBefore(timeline: readonly TimelineEvent[], event: TimelineEvent & { webhookId: string }) {
  let last: Extract<TimelineEvent, { type: 'attempt' }> | undefined;
  for (const candidate of timeline) {
    if (
      candidate.type === 'attempt' &&
      candidate.webhookId === event.webhookId &&
      candidate.at <= event.at &&
      candidate.attempt >= (last?.attempt ?? 0)
    )
      last = candidate;
  }
  return last;
}

/** The tail line of a timeline event, as the local runtime's events file has it; none for the others. */
function messageEventOf(
  messageId: string,
  timeline: readonly TimelineEvent[],
  event: TimelineEvent,
): MessageEvent | undefined {
  if (event.type === 'received') {
    const { at, size, rcptTo, remoteAddress } = event;
    return { kind: 'accepted', at, messageId, size, recipients: rcptTo.length, remoteAddress };
  }
  if (event.type !== 'delivered' && event.type !== 'retry_scheduled' && event.type !== 'dead_lettered')
    return undefined;
  const attempt = triedBefore(timeline, event);
  const delivery = {
    at: event.at,
    messageId,
    routeId: event.route,
    endpoint: event.endpoint,
    webhookId: event.webhookId,
    tries: attempt?.attempt ?? null,
  };
  if (event.type === 'delivered')
    return { kind: 'delivered', ...delivery, status: event.status, error: null };
  if (event.type === 'dead_lettered') {
    return { kind: 'failed', ...delivery, status: event.status, error: event.error, reason: event.reason };
  }
  return {
    kind: 'retry',
    ...delivery,
    tries: event.attempt - 1,
    status: attempt?.status ?? null,
    error: attempt?.error?.text ?? null,
    delaySeconds: Math.max(0, Math.round((Date.parse(event.nextAttemptAt) - Date.parse(event.at)) / 1000)),
  };
}

const eventKey = (event: TimelineEvent) => JSON.stringify(event);

/**
 * Follows the message log through the API: each poll lists the messages received since the last
 * one, the messages whose delivery moved again since then and the SMTP refusals
 * (`GET /v1/messages?since=`, `GET /v1/activity?since=` and `GET /v1/refusals?since=`, less the
 * log's lag), and reads again the ones still moving (`GET /v1/messages/{id}`) until they rest:
 * settled, or waiting only on scheduled retries, whose next try shows in the activity list. So a
 * message received before the tail started is followed too once it is retried, by its schedule,
 * the API or the CLI, and a retry storm is not read at every poll.
 */
async function apiFollower(api: ApiClient): Promise<TailReader> {
  /**
   * Per followed message: the events already seen, its status, whether it rests (settled, or
   * waiting only on scheduled retries: either way its next event is activity), the time of its
   * latest event, and for one found through its activity the time before which its events are not
   * news. Not read again while it rests; dropped once it has rested longer than the window listed.
   */
  const followed = new Map<
    string,
    {
      seen: Set<string>;
      status: MessageSummary['status'] | null;
      rests: boolean;
      lastAt: string;
      newFrom: string;
    }
  >();
  /** Activity entries already acted on, and refusals printed, until they leave the window. */
  const activitySeen = new Map<string, string>();
  const refusalsSeen = new Map<string, string>();
  let since = new Date(Date.now() - LOG_LAG_MS).toISOString();
  let startedAt: string | undefined;

  async function poll(): Promise<(MessageEvent | RefusalLine)[]> {
    const pollStart = Date.now();
    const listed = await allPages((cursor) => api.listMessages({ since, limit: 100, ...cursor }));
    const active = await allPages((cursor) => api.listActivity({ since, limit: 1000, ...cursor }));
    const refused = await allPages((cursor) => api.listRefusals({ since, limit: 100, ...cursor }));
    const changed = new Set<string>();
    for (const summary of listed) {
      const known = followed.get(summary.id);
      if (!known) {
        const lastAt = summary.receivedAt;
        followed.set(summary.id, { seen: new Set(), status: null, rests: false, lastAt, newFrom: '' });
      }
      if (known?.status !== summary.status) changed.add(summary.id);
    }
    for (const { messageId, at } of active) {
      const key = `${at} ${messageId}`;
      if (activitySeen.has(key)) continue;
      activitySeen.set(key, at);
      changed.add(messageId);
      // What it did before the tail started, or before this window (printed while it was followed), is not news.
      const newFrom = startedAt === undefined || since > startedAt ? since : startedAt;
      if (!followed.has(messageId))
        followed.set(messageId, { seen: new Set(), status: null, rests: false, lastAt: at, newFrom });
    }
    for (const [id, known] of followed) if (!known.rests) changed.add(id);
    const events: (MessageEvent | RefusalLine)[] = [];
    for (const refusal of refused) {
      // A repeat within its minute replaces the stored refusal with a later time: news again.
      const key = JSON.stringify(refusal);
      if (refusalsSeen.has(key)) continue;
      refusalsSeen.set(key, refusal.at);
      // The first poll only takes note of what the log holds already.
      if (startedAt !== undefined) events.push({ kind: 'refused', ...refusal });
    }
    const ids = [...changed];
    // A few at a time: a busy log should not open a connection per message at once.
    for (let i = 0; i < ids.length; i += 8) {
      const details = await Promise.all(
        ids.slice(i, i + 8).map((id) => api.getMessage(id).catch((error) => ({ id, error }))),
      );
      for (const detail of details) {
        const known = followed.get(detail.id)!;
        // Gone meanwhile (retention): nothing more to follow.
        if ('error' in detail) {
          followed.delete(detail.id);
          continue;
        }
        for (const event of detail.timeline) {
          const key = eventKey(event);
          if (known.seen.has(key)) continue;
          known.seen.add(key);
          if (event.at > known.lastAt) known.lastAt = event.at;
          if (event.at < known.newFrom) continue;
          const line = messageEventOf(detail.id, detail.timeline, event);
          if (line) events.push(line);
        }
        known.status = detail.status;
        known.rests = SETTLED.has(detail.status) || awaitsFollowUp(detail.timeline);
      }
    }
    since = new Date(pollStart - LOG_LAG_MS).toISOString();
    startedAt ??= new Date(pollStart).toISOString();
    for (const [id, known] of followed) if (known.rests && known.lastAt < since) followed.delete(id);
    for (const seen of [activitySeen, refusalsSeen])
      for (const [key, at] of seen) if (at < since) seen.delete(key);
    return events.sort((a, b) => a.at.localeCompare(b.at));
  }

  // From now on: what the log holds already is not printed.
  await poll();
  let failing = false;
  return {
    async read() {
      try {
        const events = await poll();
        if (failing) console.error('mailbridge: the API answers again');
        failing = false;
        return events;
      } catch (error) {
        // A tail outlives a restart of the API or a dropped connection: it says so once and polls on.
        const transient =
          error instanceof ApiUnreachableError ||
          (error instanceof ApiClientError && (error.status >= 500 || error.status === 429));
        if (!transient) throw error;
        if (!failing) console.error(`mailbridge: ${error.message}; trying again`);
        failing = true;
        return [];
      }
    },
    close: async () => {},
  };
}

/** In AWS: the jobs that reach the delivery DLQ (deliveries and retries are in the deliver function's logs). */
async function deadLetterFollower(connection: Connection): Promise<MessageEventReader> {
  const dlqUrl = await connection.queueUrl('deliveryDlq');
  const seen = new Set<string>();
  const read = async () => {
    const messages = await peek(connection.sqs, dlqUrl, connection.endpoint);
    const fresh = messages.filter((message) => !seen.has(message.MessageId!));
    for (const message of fresh) seen.add(message.MessageId!);
    return fresh;
  };
  await read();
  const events = async () =>
    (await read()).map((message): MessageEvent => {
      const at = new Date(Number(message.Attributes?.SentTimestamp) || Date.now()).toISOString();
      const entry = parseQueueBody(message.Body ?? '', DeliveryDlqBodySchema, 'a delivery DLQ entry');
      if (!entry.success) {
        // Shown, not skipped: it is mail that failed, and the SQS message id finds it (`dlq show`).
        return {
          kind: 'failed',
          at,
          messageId: `sqs:${message.MessageId}`,
          routeId: null,
          endpoint: null,
          webhookId: null,
          tries: null,
          status: null,
          error: entry.error,
          reason: 'malformed',
        };
      }
      const { messageId, routeId, endpoint, webhookId, attempts, lastStatus, lastError, reason } = entry.data;
      return {
        kind: 'failed',
        at,
        messageId,
        routeId,
        endpoint,
        webhookId,
        tries: attempts ?? null,
        status: lastStatus ?? null,
        error: lastError ?? null,
        // Absent when SQS moved the job after maxReceiveCount.
        reason: reason ?? 'receive-limit',
      };
    });
  return { read: events, close: async () => {} };
}

/** `mailbridge tail`. */
export function registerTail(program: Command): void {
  withApiAccessOptions(
    withConnectionOptions(
      program
        .command('tail')
        .description(
          "follow the message log live, one line per message accepted, delivered, retried or failed, whatever the endpoint, and per SMTP refusal (control plane API: the running `mailbridge dev`'s, or MAILBRIDGE_API_URL). Without an API: locally the runtime's own record, in AWS the delivery DLQ",
        )
        .option('--interval <seconds>', 'poll interval', seconds, 1)
        .option('--count <n>', 'exit 0 after this many lines (exit 1 if --timeout comes first)', positiveInt)
        .option('--timeout <seconds>', 'stop after this long', seconds)
        .option('--json', 'JSON lines'),
    ),
  ).action(async (options: TailOptions) => {
    const api = await apiInUse(options);
    if (api) {
      try {
        const events = await apiFollower(api);
        console.error(`following the message log of ${api.url} (Ctrl-C stops)`);
        await print(events, options);
      } catch (error) {
        throw explainApiError(error);
      }
      return;
    }
    const connection = await connect(options);
    let events: MessageEventReader | undefined;
    try {
      let what: string;
      if (connection.local) {
        if (!connection.runtime) {
          throw new CliError(
            `no running \`mailbridge dev\` has its data folder at ${options.dataDir}: start it (npm start), or name its folder with --data-dir, or its API with MAILBRIDGE_API_URL`,
          );
        }
        const { followMessageEvents } = await import('../dev/index.ts');
        events = await followMessageEvents(connection.runtime.eventsFile, { from: 'end' });
        what = `the messages of mailbridge dev (pid ${connection.runtime.pid})`;
      } else {
        events = await deadLetterFollower(connection);
        what = 'the delivery DLQ';
      }
      console.error(`following ${what} (Ctrl-C stops)`);
      await print(events, options);
    } finally {
      await events?.close();
      connection.close();
    }
  });
}

async function print(events: TailReader, options: TailOptions): Promise<void> {
  const { formatMessageEvent } = await import('../dev/index.ts');
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  let printed = 0;
  let interrupted = false;
  const stop = () => {
    interrupted = true;
  };
  process.once('SIGINT', stop);
  try {
    while (!interrupted && Date.now() < deadline) {
      for (const event of await events.read()) {
        const line = event.kind === 'refused' ? formatRefusal(event) : formatMessageEvent(event);
        console.log(options.json ? JSON.stringify(event) : `${event.at.slice(0, 11)}${line}`);
        if (++printed === options.count) return;
      }
      await sleep(Math.min(options.interval * 1000, Math.max(0, deadline - Date.now())));
    }
    if (options.count !== undefined && !interrupted) {
      throw new CliError(`timed out after ${printed} of ${options.count} line(s)`);
    }
  } finally {
    process.off('SIGINT', stop);
  }
}
