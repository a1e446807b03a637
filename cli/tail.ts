import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { type ConnectionOptions, connect, withConnectionOptions } from './connection.ts';
import { CliError, positiveInt, seconds } from './output.ts';
import { peek } from './queue.ts';

interface TailOptions extends ConnectionOptions {
  inbox: string;
  interval: number;
  count?: number;
  timeout?: number;
  json?: boolean;
}

/** One line of `tail`: a webhook the dev inbox received, or a job that reached the delivery DLQ. */
type TailEvent =
  | {
      readonly kind: 'delivered';
      readonly at: string;
      readonly messageId: string | null;
      readonly routeId: string | null;
      readonly webhookId: string | null;
      readonly subject: string | null;
      readonly signatureValid: boolean;
    }
  | {
      readonly kind: 'failed';
      readonly at: string;
      readonly messageId: string | null;
      readonly routeId: string | null;
      readonly endpoint: string | null;
      readonly reason: string | null;
      readonly lastStatus: number | null;
      readonly lastError: string | null;
      readonly attempts: number | null;
    };

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === 'number' ? value : null;
}

function fields(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

function parseObject(text: string | undefined): Record<string, unknown> {
  try {
    return fields(JSON.parse(text ?? ''));
  } catch {
    return {};
  }
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.json();
}

/** Follows the dev inbox API: webhooks received after `from`. */
function inboxFollower(base: string) {
  let seen: number | undefined;
  return async (): Promise<TailEvent[]> => {
    const { received } = (await getJson(`${base}/api/webhooks/count`)) as { received: number };
    const from = seen ?? received;
    seen = received;
    const events: TailEvent[] = [];
    for (let seq = from + 1; seq <= received; seq++) {
      const entry = (await getJson(`${base}/api/webhooks/${seq}`).catch(() => undefined)) as
        | { receivedAt: string; headers: Record<string, unknown>; body: string; signatureValid: boolean }
        | undefined;
      // Entries beyond the inbox's limit are dropped between two polls; nothing to show then.
      if (!entry) continue;
      const payload = parseObject(entry.body);
      events.push({
        kind: 'delivered',
        at: entry.receivedAt,
        messageId: str(payload.id),
        routeId: str(fields(payload.route).id),
        webhookId: str(entry.headers['webhook-id']),
        subject: str(fields(payload.message).subject),
        signatureValid: entry.signatureValid,
      });
    }
    return events;
  };
}

function format(event: TailEvent): string {
  if (event.kind === 'delivered') {
    const signature = event.signatureValid ? 'valid' : 'INVALID';
    return `${event.at} delivered ${event.messageId ?? '-'} route=${event.routeId ?? '-'} webhook-id=${event.webhookId ?? '-'} signature=${signature} subject=${JSON.stringify(event.subject ?? '')}`;
  }
  const status = event.lastStatus === null ? '' : ` status=${event.lastStatus}`;
  return `${event.at} failed    ${event.messageId ?? '-'} route=${event.routeId ?? '-'} endpoint=${event.endpoint ?? '-'} reason=${event.reason ?? '-'}${status} attempts=${event.attempts ?? '-'} error=${JSON.stringify(event.lastError ?? '')}`;
}

/** `mailbridge tail`. */
export function registerTail(program: Command): void {
  withConnectionOptions(
    program
      .command('tail')
      .description(
        'follow deliveries (dev inbox) and failures (delivery DLQ) live, one line each; in AWS only failures (deliveries are in the deliver function logs)',
      )
      .option('--inbox <url>', 'dev inbox of the local runtime', 'http://127.0.0.1:8025')
      .option('--interval <seconds>', 'poll interval', seconds, 1)
      .option('--count <n>', 'exit 0 after this many lines (exit 1 if --timeout comes first)', positiveInt)
      .option('--timeout <seconds>', 'stop after this long', seconds)
      .option('--json', 'JSON lines'),
  ).action(async (options: TailOptions) => {
    const connection = await connect(options);
    const followInbox = connection.local ? inboxFollower(options.inbox.replace(/\/$/, '')) : undefined;
    const dlqUrl = await connection.queueUrl('deliveryDlq');
    const seenFailures = new Set<string>();
    let first = true;
    const pollFailures = async (): Promise<TailEvent[]> => {
      const messages = await peek(connection.sqs, dlqUrl, connection.endpoint);
      const fresh = messages.filter((message) => !seenFailures.has(message.MessageId!));
      for (const message of fresh) seenFailures.add(message.MessageId!);
      if (first) return [];
      return fresh.map((message) => {
        const entry = parseObject(message.Body);
        return {
          kind: 'failed',
          at: new Date(Number(message.Attributes?.SentTimestamp) || Date.now()).toISOString(),
          messageId: str(entry.messageId),
          routeId: str(entry.routeId),
          endpoint: str(entry.endpoint),
          reason: str(entry.reason),
          lastStatus: num(entry.lastStatus),
          lastError: str(entry.lastError),
          attempts: num(entry.attempts),
        };
      });
    };
    const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
    let printed = 0;
    let interrupted = false;
    const stop = () => {
      interrupted = true;
    };
    process.once('SIGINT', stop);
    try {
      while (!interrupted && Date.now() < deadline) {
        const events = [...((await followInbox?.()) ?? []), ...(await pollFailures())];
        if (first) {
          console.error(
            `following ${followInbox ? `${options.inbox} and ` : ''}the delivery DLQ (Ctrl-C stops)`,
          );
          first = false;
        }
        for (const event of events) {
          console.log(options.json ? JSON.stringify(event) : format(event));
          if (++printed === options.count) return;
        }
        await sleep(Math.min(options.interval * 1000, Math.max(0, deadline - Date.now())));
      }
      if (options.count !== undefined && !interrupted) {
        throw new CliError(`timed out after ${printed} of ${options.count} line(s)`);
      }
    } finally {
      process.off('SIGINT', stop);
      connection.close();
    }
  });
}
