import type { Message } from '@aws-sdk/client-sqs';
import { type Command, Option } from 'commander';
import { s3EndpointHealthStore } from '../core/aws/index.ts';
import {
  DeliveryDlqBodySchema,
  InboundDlqBodySchema,
  parseQueueBody,
  QUEUE_SETTINGS,
  sqsJson,
} from '../core/index.ts';
import {
  type Connection,
  type ConnectionOptions,
  connect,
  type QueueRole,
  withConnectionOptions,
} from './connection.ts';
import { logRequeued, type Requeued } from './message-log.ts';
import { CliError, formatTable, printJson, startProgress, UsageError } from './output.ts';
import { moveTo, peek, receiveAll, release } from './queue.ts';

/** The two dead-letter queues, and where a redriven entry goes back to. */
const DLQS = {
  'delivery-dlq': { role: 'deliveryDlq', source: 'delivery' },
  'inbound-dlq': { role: 'inboundDlq', source: 'inbound' },
} as const satisfies Record<string, { role: QueueRole; source: QueueRole }>;
type DlqName = keyof typeof DLQS;

/** One DLQ entry as the CLI shows it: what it is and why it is there. */
export interface DlqItem {
  readonly queue: DlqName;
  readonly sqsMessageId: string;
  readonly messageId: string | null;
  readonly routeId: string | null;
  readonly endpoint: string | null;
  readonly webhookId: string | null;
  readonly recipients: readonly string[];
  /**
   * `permanent`, `gone`, `blocked`, `exhausted`, `parked` (set by the deliver function); `receive-limit` (a job
   * SQS moved after maxReceiveCount); `unrouted` (set by parse: no route takes its recipients now);
   * `parse-failed` (an inbound event SQS moved after maxReceiveCount); `malformed` (not an entry of
   * its queue, `lastError` says why; not redrivable).
   */
  readonly reason: string;
  readonly attempts: number | null;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  /** When it was put on the DLQ. */
  readonly deadLetteredAt: string | null;
}

interface Held {
  readonly item: DlqItem;
  readonly message: Message;
  /**
   * What goes back to the source queue, and what the message log records when it does; undefined
   * when redriving would only fail again.
   */
  readonly redrive:
    | { readonly body: string; readonly logged: { readonly messageId: string; readonly event: Requeued } }
    | undefined;
}

function describe(queue: DlqName, message: Message): Held {
  const body = message.Body ?? '';
  const sentAt = Number(message.Attributes?.SentTimestamp);
  const base = {
    queue,
    sqsMessageId: message.MessageId!,
    messageId: null,
    routeId: null,
    endpoint: null,
    webhookId: null,
    recipients: [],
    attempts: null,
    lastStatus: null,
    lastError: null,
    deadLetteredAt: Number.isFinite(sentAt) ? new Date(sentAt).toISOString() : null,
  };
  const malformed = (error: string): Held => ({
    message,
    redrive: undefined,
    item: { ...base, reason: 'malformed', lastError: error },
  });
  if (queue === 'inbound-dlq') {
    const entry = parseQueueBody(body, InboundDlqBodySchema, 'an inbound DLQ entry');
    if (!entry.success) return malformed(entry.error);
    const { reason, lastError, ...event } = entry.data;
    return {
      message,
      // Parsed again: its jobs are in the `parsed` event that follows.
      redrive: {
        body: sqsJson(event),
        logged: { messageId: event.id, event: { type: 'retried', route: null, jobs: [] } },
      },
      item: {
        ...base,
        messageId: event.id,
        recipients: event.envelope.rcptTo,
        // Without a reason SQS moved it: parse failed on it at every receive.
        reason: reason ?? 'parse-failed',
        attempts: reason ? null : QUEUE_SETTINGS.inbound.maxReceiveCount,
        lastError: lastError ?? 'the parse function failed on it every time; its logs (by messageId) say why',
      },
    };
  }
  const entry = parseQueueBody(body, DeliveryDlqBodySchema, 'a delivery DLQ entry');
  if (!entry.success) return malformed(entry.error);
  // A fresh receive count gives the job its route's whole schedule again (see functions/deliver).
  const { reason, attempts, lastError, lastStatus, ...job } = entry.data;
  return {
    message,
    redrive: {
      body: sqsJson(job),
      logged: {
        messageId: job.messageId,
        event: {
          type: 'retried',
          route: job.routeId,
          jobs: [{ route: job.routeId, endpoint: job.endpoint, webhookId: job.webhookId }],
        },
      },
    },
    item: {
      ...base,
      messageId: job.messageId,
      routeId: job.routeId,
      endpoint: job.endpoint,
      webhookId: job.webhookId,
      recipients: job.recipients,
      // Without a reason SQS moved it after maxReceiveCount (the function crashed or timed out).
      reason: reason ?? 'receive-limit',
      attempts: attempts ?? QUEUE_SETTINGS.delivery.maxReceiveCount,
      lastStatus: lastStatus ?? null,
      lastError: lastError ?? null,
    },
  };
}

/** Every entry of the chosen DLQs, held invisible until released. */
async function holdAll(connection: Connection, queues: readonly DlqName[]): Promise<Map<DlqName, Held[]>> {
  const held = new Map<DlqName, Held[]>();
  try {
    for (const queue of queues) {
      const url = await connection.queueUrl(DLQS[queue].role);
      const messages = await receiveAll(connection.sqs, url, connection.local);
      held.set(
        queue,
        messages.map((message) => describe(queue, message)),
      );
    }
  } catch (error) {
    await releaseAll(connection, held);
    throw error;
  }
  return held;
}

async function releaseAll(
  connection: Connection,
  held: ReadonlyMap<DlqName, readonly Held[]>,
): Promise<void> {
  for (const [queue, entries] of held) {
    await release(
      connection.sqs,
      await connection.queueUrl(DLQS[queue].role),
      entries.map((entry) => entry.message),
      connection.local,
    );
  }
}

/** The entries of the chosen DLQs, left where they are. */
async function listItems(connection: Connection, queues: readonly DlqName[]): Promise<DlqItem[]> {
  const items: DlqItem[] = [];
  for (const queue of queues) {
    const url = await connection.queueUrl(DLQS[queue].role);
    const messages = await peek(connection.sqs, url, connection.endpoint);
    items.push(...messages.map((message) => describe(queue, message).item));
  }
  return items;
}

function summary(item: DlqItem): string[] {
  const status = item.lastStatus === null ? '' : ` (HTTP ${item.lastStatus})`;
  const tries = item.attempts === null ? '' : `, ${item.attempts} ${item.attempts === 1 ? 'try' : 'tries'}`;
  return [
    item.messageId ?? item.sqsMessageId,
    item.routeId ?? '-',
    item.endpoint ?? item.recipients.join(','),
    `${item.reason}${status}${tries}`,
    item.lastError ?? '',
  ];
}

function printList(items: readonly DlqItem[], queues: readonly DlqName[]): void {
  for (const queue of queues) {
    const entries = items.filter((item) => item.queue === queue);
    console.log(
      `${queue}: ${entries.length === 0 ? 'empty' : `${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}`}`,
    );
    for (const line of formatTable(entries.map(summary))) console.log(`  ${line}`);
  }
}

function printItem(item: DlqItem): void {
  const rows: [string, string][] = [
    ['queue', item.queue],
    ['message id', item.messageId ?? '-'],
    ['route', item.routeId ?? '-'],
    ['endpoint', item.endpoint ?? '-'],
    ['webhook id', item.webhookId ?? '-'],
    ['recipients', item.recipients.join(', ') || '-'],
    ['reason', item.reason],
    ['attempts', item.attempts === null ? '-' : String(item.attempts)],
    ['last status', item.lastStatus === null ? '-' : String(item.lastStatus)],
    ['last error', item.lastError ?? '-'],
    ['dead-lettered', item.deadLetteredAt ?? '-'],
    ['sqs message id', item.sqsMessageId],
  ];
  for (const line of formatTable(rows)) console.log(line);
}

interface DlqOptions extends ConnectionOptions {
  queue?: 'inbound' | 'delivery';
  json?: boolean;
}

function chosenQueues(options: DlqOptions): DlqName[] {
  return options.queue ? [`${options.queue}-dlq`] : ['delivery-dlq', 'inbound-dlq'];
}

interface RedriveOptions extends DlqOptions {
  all?: boolean;
  messageId?: string;
  route?: string;
}

/** An endpoint that redrive enabled again, and why it had been disabled. */
interface Reenabled {
  readonly endpoint: string;
  readonly disabledAt: string;
  readonly reason: string | null;
}

/**
 * Enables again the disabled endpoints among `endpoints` (deletes their health state), so that the
 * jobs redriven to them are tried instead of parked again.
 */
async function reenable(connection: Connection, endpoints: ReadonlySet<string>): Promise<Reenabled[]> {
  if (endpoints.size === 0) return [];
  const store = s3EndpointHealthStore(connection.s3, connection.bucket());
  const reenabled: Reenabled[] = [];
  for (const endpoint of endpoints) {
    const { state } = await store.read(endpoint);
    if (state.disabledAt === null) continue;
    await store.remove(endpoint);
    reenabled.push({ endpoint, disabledAt: state.disabledAt, reason: state.reason });
  }
  return reenabled;
}

async function redrive(connection: Connection, options: RedriveOptions): Promise<void> {
  const filters = [options.all, options.messageId, options.route].filter((value) => value !== undefined);
  if (filters.length !== 1)
    throw new UsageError('redrive needs exactly one of --all, --message-id or --route');
  const matches = (item: DlqItem) =>
    options.all === true ||
    item.messageId === options.messageId ||
    (options.route !== undefined && item.routeId === options.route);
  const held = await holdAll(connection, chosenQueues(options));
  const redriven: DlqItem[] = [];
  const skipped: DlqItem[] = [];
  // Moved entries are gone from the DLQ; every other held entry, chosen or not, is released.
  const moved = new Set<Held>();
  const logged: { messageId: string; event: Requeued }[] = [];
  const startedAt = new Date();
  let reenabled: Reenabled[] = [];
  try {
    const chosen = [...held.values()].flat().filter((entry) => matches(entry.item));
    reenabled = await reenable(
      connection,
      new Set(
        chosen.flatMap(({ item, redrive }) =>
          item.queue === 'delivery-dlq' && redrive !== undefined && item.endpoint ? [item.endpoint] : [],
        ),
      ),
    );
    const progress = startProgress(chosen.length, 'redrive', { json: options.json === true });
    for (const entry of chosen) {
      const { queue } = entry.item;
      if (entry.redrive === undefined) {
        skipped.push(entry.item);
      } else {
        await moveTo(
          connection.sqs,
          { queueUrl: await connection.queueUrl(DLQS[queue].role), message: entry.message },
          await connection.queueUrl(DLQS[queue].source),
          entry.redrive.body,
        );
        moved.add(entry);
        logged.push(entry.redrive.logged);
        redriven.push(entry.item);
      }
      progress.tick();
    }
    progress.stop();
  } finally {
    await releaseAll(
      connection,
      new Map([...held].map(([queue, entries]) => [queue, entries.filter((entry) => !moved.has(entry))])),
    );
    await logRequeued(connection, logged, startedAt);
  }
  if (options.json) {
    printJson({ redriven, skipped, reenabled });
  } else {
    for (const { endpoint, disabledAt, reason } of reenabled)
      console.log(`re-enabled ${endpoint} (disabled since ${disabledAt} because ${reason})`);
    console.log(`redrove ${redriven.length} ${redriven.length === 1 ? 'entry' : 'entries'}`);
    for (const line of formatTable(redriven.map((item) => [item.queue, ...summary(item).slice(0, 3)])))
      console.log(`  ${line}`);
    for (const item of skipped)
      console.error(`skipped ${item.queue} ${item.sqsMessageId}: ${item.reason}, would fail again`);
  }
  if (redriven.length === 0) throw new CliError('nothing redriven: no entry matched');
}

/** `mailbridge dlq list|show|redrive`. */
export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('what is in the dead-letter queues and why; move entries back to be tried again');
  const withCommon = (command: Command) =>
    withConnectionOptions(
      command
        .addOption(new Option('--queue <which>', 'only this DLQ').choices(['inbound', 'delivery']))
        .option('--json', 'print JSON'),
    );

  withCommon(
    dlq
      .command('list')
      .description('list the entries of both DLQs with reason, last status, error and attempts'),
  ).action(async (options: DlqOptions) => {
    const connection = await connect(options);
    try {
      const items = await listItems(connection, chosenQueues(options));
      if (options.json) printJson(items);
      else printList(items, chosenQueues(options));
    } finally {
      connection.close();
    }
  });

  withCommon(
    dlq
      .command('show')
      .argument('<id>', 'a message id (every entry about it) or an SQS message id')
      .description('show entries in full'),
  ).action(async (id: string, options: DlqOptions) => {
    const connection = await connect(options);
    try {
      const found = (await listItems(connection, chosenQueues(options))).filter(
        (item) => item.messageId === id || item.sqsMessageId === id,
      );
      if (found.length === 0) throw new CliError(`no DLQ entry for ${id}`);
      if (options.json) printJson(found);
      else
        found.forEach((item, index) => {
          if (index > 0) console.log('');
          printItem(item);
        });
    } finally {
      connection.close();
    }
  });

  withCommon(
    dlq
      .command('redrive')
      .description(
        'send entries back to their source queue (a delivery job gets its full retry schedule again); first re-enable the disabled endpoints of the delivery jobs it sends back',
      )
      .option('--all', 'every entry')
      .option('--message-id <id>', 'the entries of one message')
      .option('--route <id>', 'the delivery entries of one route'),
  ).action(async (options: RedriveOptions) => {
    const connection = await connect(options);
    try {
      await redrive(connection, options);
    } finally {
      connection.close();
    }
  });
}
