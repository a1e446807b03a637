import type { Command } from 'commander';
import type { DomainView } from '../core/control/index.ts';
import { type ApiOptions, printNextPage, withApi, withApiOptions } from './api.ts';
import { formatTable, positiveInt, printJson } from './output.ts';

const NOT_FOUND_HINT = 'mailbridge domains list shows the domains';

function printRecords(domain: DomainView): void {
  for (const line of formatTable(domain.records.map((record) => [record.name, record.type, record.value])))
    console.log(`  ${line}`);
}

/** `mailbridge domains list|add|verify|rm`. */
export function registerDomains(program: Command): void {
  const domains = program
    .command('domains')
    .description("the domains mail is taken for: the config file's and those added through the API");

  withApiOptions(
    domains
      .command('list')
      .description(
        'every domain, its status (pending until its DNS proof is checked) and where it comes from',
      )
      .option('--limit <n>', 'API domains per page (at most 100)', positiveInt)
      .option('--cursor <cursor>', 'the page after a previous one (printed under it)'),
  ).action(async (options: ApiOptions & { limit?: number; cursor?: string }) => {
    const page = await withApi(options, '', (api) =>
      api.listDomains({ limit: options.limit, cursor: options.cursor }),
    );
    if (options.json) return printJson(page);
    const rows = page.items.map((domain) => [domain.name, domain.status, domain.source]);
    for (const line of formatTable([['NAME', 'STATUS', 'SOURCE'], ...rows])) console.log(line);
    printNextPage(page.nextCursor);
  });

  withApiOptions(
    domains
      .command('add')
      .description('claim a domain; prints the DNS records to publish before `domains verify`')
      .argument('<name>', 'domain name, e.g. support.customer.com'),
  ).action(async (name: string, options: ApiOptions) => {
    const domain = await withApi(options, '', (api) => api.addDomain(name));
    if (options.json) return printJson(domain);
    console.log(
      `domain ${domain.name} added, ${domain.status}; publish these records, then run mailbridge domains verify ${domain.name}:`,
    );
    printRecords(domain);
  });

  withApiOptions(
    domains
      .command('verify')
      .description('check the TXT proof in DNS: pending → verified (mail is taken from then on)')
      .argument('<name>', 'domain name'),
  ).action(async (name: string, options: ApiOptions) => {
    const domain = await withApi(options, NOT_FOUND_HINT, (api) => api.verifyDomain(name));
    if (options.json) return printJson(domain);
    console.log(`domain ${domain.name} ${domain.status}`);
  });

  withApiOptions(
    domains
      .command('rm')
      .description(
        'remove an API domain: its mail gets 550 5.7.1 within seconds (config domains: edit the file)',
      )
      .argument('<name>', 'domain name'),
  ).action(async (name: string, options: ApiOptions) => {
    await withApi(options, NOT_FOUND_HINT, (api) => api.deleteDomain(name));
    if (options.json) return printJson({ name, deleted: true });
    console.log(`domain ${name} removed`);
  });
}
