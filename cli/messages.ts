import { type Command, Option } from 'commander';
import { describeTimelineEvent, MESSAGE_STATUSES, type MessageListQuery } from '../core/control/index.ts';
import { type ApiOptions, printNextPage, timeOption, withApi, withApiOptions } from './api.ts';
import { formatTable, positiveInt, printJson } from './output.ts';

interface ListOptions extends ApiOptions {
  to?: string;
  from?: string;
  subject?: string;
  status?: MessageListQuery['status'];
  since?: string;
  until?: string;
  route?: string;
  limit?: number;
  cursor?: string;
}

interface RequeueOptions extends ApiOptions {
  route?: string;
}

const NOT_FOUND_HINT = 'mailbridge messages list shows the ids the log holds';

/** `mailbridge messages list|show|retry|release`. */
export function registerMessages(program: Command): void {
  const messages = program
    .command('messages')
    .description('the message log: every accepted message, its deliveries and failures (control plane API)');

  withApiOptions(
    messages
      .command('list')
      .description('messages, newest first, filtered; one page at a time')
      .option('--to <address>', 'a recipient (SMTP RCPT TO)')
      .option('--from <address>', 'the sender (SMTP MAIL FROM; <> for bounces)')
      .option('--subject <words>', 'words that must all be in the subject')
      .addOption(new Option('--status <status>', 'derived from the timeline').choices(MESSAGE_STATUSES))
      .option('--since <time>', 'received at or after: ISO 8601, or an age such as 15m, 2h, 7d', timeOption)
      .option('--until <time>', 'received at or before: ISO 8601, or an age', timeOption)
      .option('--route <id>', 'queued or tried for this route')
      .option('--limit <n>', 'messages per page (at most 100)', positiveInt)
      .option('--cursor <cursor>', 'the page after a previous one (printed under it)'),
  ).action(async (options: ListOptions) => {
    const page = await withApi(options, '', (api) =>
      api.listMessages({
        recipient: options.to,
        sender: options.from,
        q: options.subject,
        status: options.status,
        since: options.since,
        until: options.until,
        route: options.route,
        limit: options.limit,
        cursor: options.cursor,
      }),
    );
    if (options.json) return printJson(page);
    if (page.items.length === 0) console.log('no messages');
    else {
      const rows = page.items.map((m) => [
        m.id,
        m.receivedAt.replace(/\.\d+Z$/, 'Z'),
        m.status,
        m.mailFrom === null ? '?' : `<${m.mailFrom}>`,
        m.rcptTo.join(','),
        m.subject ?? '',
      ]);
      for (const line of formatTable([['ID', 'RECEIVED', 'STATUS', 'FROM', 'TO', 'SUBJECT'], ...rows]))
        console.log(line);
    }
    printNextPage(page.nextCursor);
  });

  withApiOptions(
    messages
      .command('show')
      .description('one message: its envelope, status, routes and timeline')
      .argument('<id>', 'message id (the "queued as" of the 250 reply)'),
  ).action(async (id: string, options: ApiOptions) => {
    const message = await withApi(options, NOT_FOUND_HINT, (api) => api.getMessage(id));
    if (options.json) return printJson(message);
    console.log(`message ${message.id}: ${message.status}`);
    for (const line of formatTable([
      ['received', message.receivedAt],
      [
        'from',
        message.mailFrom === null
          ? '?'
          : `<${message.mailFrom}>${message.from ? ` (From: ${message.from})` : ''}`,
      ],
      ['to', message.rcptTo.join(', ')],
      ['subject', message.subject ?? ''],
      ['size', message.size === null ? '?' : `${message.size} bytes`],
      ['routes', message.routes.join(', ')],
      ['raw', message.raw?.url ?? 'not available'],
    ]))
      console.log(`  ${line}`);
    console.log('timeline:');
    for (const line of formatTable(
      message.timeline.map((event) => [event.at, event.type, describeTimelineEvent(event)]),
    ))
      console.log(`  ${line}`);
  });

  const requeue = (name: 'retry' | 'release', description: string) =>
    withApiOptions(
      messages
        .command(name)
        .description(description)
        .argument('<id>', 'message id')
        .option('--route <id>', 'only this route (default: every route its recipients go to now)'),
    ).action(async (id: string, options: RequeueOptions) => {
      const answer = await withApi(options, NOT_FOUND_HINT, (api) =>
        name === 'retry' ? api.retryMessage(id, options.route) : api.releaseMessage(id, options.route),
      );
      if (options.json) return printJson(answer);
      // Parse builds the jobs by the routes in force, after this answer: the timeline shows them.
      const scope = options.route === undefined ? 'every route' : `route ${options.route}`;
      const asked =
        name === 'retry'
          ? `queued message ${answer.messageId} again`
          : `released message ${answer.messageId}`;
      console.log(
        `${asked} for ${scope}: parse builds its deliveries by the routes in force; mailbridge messages show ${answer.messageId} lists them`,
      );
    });
  requeue('retry', 'deliver a message again (its webhook-id stays the same, so receivers dedupe)');
  requeue('release', 'deliver a message that filtering quarantined');
}
