import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { DeliveryJobSchema } from '../core/index.ts';
import type { MessageEvent, MessageEventReader } from '../dev/index.ts';
import { type Connection, type ConnectionOptions, connect, withConnectionOptions } from './connection.ts';
import { CliError, positiveInt, seconds } from './output.ts';
import { peek } from './queue.ts';

interface TailOptions extends ConnectionOptions {
  interval: number;
  count?: number;
  timeout?: number;
  json?: boolean;
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
    (await read()).flatMap((message): MessageEvent[] => {
      let document: unknown;
      try {
        document = JSON.parse(message.Body ?? '');
      } catch {
        return [];
      }
      const entry = DeliveryJobSchema.safeParse(document);
      if (!entry.success) return [];
      // Set by the deliver function beside the job; absent when SQS moved it after maxReceiveCount.
      const { reason, attempts } = document as { reason?: unknown; attempts?: unknown };
      return [
        {
          kind: 'failed',
          at: new Date(Number(message.Attributes?.SentTimestamp) || Date.now()).toISOString(),
          messageId: entry.data.messageId,
          routeId: entry.data.routeId,
          endpoint: entry.data.endpoint,
          webhookId: entry.data.webhookId,
          tries: typeof attempts === 'number' ? attempts : null,
          status: entry.data.lastStatus ?? null,
          error: entry.data.lastError ?? null,
          reason: typeof reason === 'string' ? reason : 'receive-limit',
        },
      ];
    });
  return { read: events, close: async () => {} };
}

/** `mailbridge tail`. */
export function registerTail(program: Command): void {
  withConnectionOptions(
    program
      .command('tail')
      .description(
        'follow messages live, one line each: locally every message accepted, delivered, retried or failed (as the running `mailbridge dev` records them); in AWS the failures (the delivery DLQ; deliveries and retries are in the deliver function logs)',
      )
      .option('--interval <seconds>', 'poll interval', seconds, 1)
      .option('--count <n>', 'exit 0 after this many lines (exit 1 if --timeout comes first)', positiveInt)
      .option('--timeout <seconds>', 'stop after this long', seconds)
      .option('--json', 'JSON lines'),
  ).action(async (options: TailOptions) => {
    const connection = await connect(options);
    let events: MessageEventReader | undefined;
    try {
      let what: string;
      if (connection.local) {
        if (!connection.runtime) {
          throw new CliError(
            `no running \`mailbridge dev\` has its data folder at ${options.dataDir}: start it (npm start), or name its folder with --data-dir`,
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

async function print(events: MessageEventReader, options: TailOptions): Promise<void> {
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
        console.log(
          options.json ? JSON.stringify(event) : `${event.at.slice(0, 11)}${formatMessageEvent(event)}`,
        );
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
