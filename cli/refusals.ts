import type { Command } from 'commander';
import { type ApiOptions, printNextPage, timeOption, withApi, withApiOptions } from './api.ts';
import { formatTable, positiveInt, printJson } from './output.ts';

interface ListOptions extends ApiOptions {
  since?: string;
  recipient?: string;
  limit?: number;
  cursor?: string;
}

/** `mailbridge refusals list`. */
export function registerRefusals(program: Command): void {
  const refusals = program
    .command('refusals')
    .description("SMTP refusals: why a sender's mail bounced, recipient by recipient (control plane API)");

  withApiOptions(
    refusals
      .command('list')
      .description('refusals, newest first; one page at a time')
      .option(
        '--since <time>',
        'refused at or after: ISO 8601, or an age such as 15m, 2h, 3d (default 1h)',
        timeOption,
      )
      .option('--recipient <address>', 'a refused recipient (RCPT TO)')
      .option('--limit <n>', 'refusals per page (at most 100)', positiveInt)
      .option('--cursor <cursor>', 'the page after a previous one (printed under it)'),
  ).action(async (options: ListOptions) => {
    const page = await withApi(options, '', (api) =>
      api.listRefusals({
        since: options.since,
        recipient: options.recipient,
        limit: options.limit,
        cursor: options.cursor,
      }),
    );
    if (options.json) return printJson(page);
    // A page reads a bounded part of the log, so an empty one may still have a next.
    if (page.items.length === 0)
      console.log(page.nextCursor ? 'no refusals in this part of the log' : 'no refusals');
    else {
      const rows = page.items.map((r) => [
        r.at.replace(/\.\d+Z$/, 'Z'),
        r.remoteAddress,
        `<${r.mailFrom}>`,
        // No recipient: the MAIL FROM itself was refused.
        r.recipient || '-',
        r.reply,
      ]);
      for (const line of formatTable([['REFUSED', 'CLIENT', 'FROM', 'TO', 'REPLY'], ...rows]))
        console.log(line);
    }
    printNextPage(page.nextCursor);
  });
}
