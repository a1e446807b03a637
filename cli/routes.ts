import { type Command, Option } from 'commander';
import { s3EndpointHealthStore } from '../core/aws/index.ts';
import { type ApiPage, type DomainView, RcptIndex, type RouteView } from '../core/control/index.ts';
import { type Config, ConfigError, type EndpointHealth, type Route, SmtpError } from '../core/index.ts';
import {
  type ApiOptions,
  apiInUse,
  explainApiError,
  printNextPage,
  withApi,
  withApiAccessOptions,
  withApiOptions,
} from './api.ts';
import {
  type Connection,
  type ConnectionOptions,
  configInUse,
  connect,
  withConnectionOptions,
} from './connection.ts';
import { CliError, collect, formatTable, positiveInt, printJson, seconds } from './output.ts';

interface RoutesOptions extends ConnectionOptions, ApiOptions {
  config?: string;
  runtime: 'local' | 'aws';
  json?: boolean;
}

/** One endpoint's health as the deliver function keeps it. */
interface EndpointStatus extends EndpointHealth {
  readonly endpoint: string;
  readonly status: 'enabled' | 'failing' | 'disabled';
}

/** Reads the health of `endpoints` where the deliver function keeps it; an error says why it could not. */
async function readHealth(
  connection: Connection,
  endpoints: readonly string[],
): Promise<{ where: string; statuses: EndpointStatus[] } | { error: string }> {
  try {
    const bucket = connection.bucket();
    const store = s3EndpointHealthStore(connection.s3, bucket);
    const statuses = await Promise.all(
      endpoints.map(async (endpoint): Promise<EndpointStatus> => {
        const { state } = await store.read(endpoint);
        const status = state.disabledAt ? 'disabled' : state.firstFailureAt ? 'failing' : 'enabled';
        return { endpoint, status, ...state };
      }),
    );
    const where = connection.endpoint ? `${connection.endpoint}, bucket ${bucket}` : `bucket ${bucket}`;
    return { where, statuses };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function describeHealth(status: EndpointStatus): string {
  if (status.status === 'disabled') return `disabled since ${status.disabledAt} because ${status.reason}`;
  if (status.status === 'failing') return `enabled, failing since ${status.firstFailureAt}`;
  return 'enabled';
}

/** What one address gets: its route and endpoints, or the SMTP reply that refuses it. */
type AddressResult =
  | {
      readonly address: string;
      readonly accepted: true;
      readonly route: string;
      readonly endpoints: readonly string[];
    }
  | { readonly address: string; readonly accepted: false; readonly reply: string };

function check(index: RcptIndex, address: string): AddressResult {
  try {
    const { route } = index.resolve(address);
    return { address, accepted: true, route: route.id, endpoints: route.endpoints };
  } catch (error) {
    if (!(error instanceof SmtpError)) throw error;
    return { address, accepted: false, reply: `${error.responseCode} ${error.message}` };
  }
}

/** Every item of a paged API list, a page of 100 at a time. */
async function allPages<T>(
  list: (page: { limit: number; cursor?: string }) => Promise<ApiPage<T>>,
): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await list({ limit: 100, cursor });
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return items;
}

/** The routes and domains made through the API (the config file's are read from the file). */
interface ApiRecipients {
  readonly url: string;
  readonly routes: RouteView[];
  readonly domains: DomainView[];
}

/**
 * The API's routes and domains, from the API the options name (else the running `mailbridge dev`'s);
 * when there is none, or it cannot be read, why not.
 */
async function readApiRecipients(options: ApiOptions): Promise<ApiRecipients | { error: string }> {
  try {
    const api = await apiInUse(options);
    if (!api) return { error: 'no API: set MAILBRIDGE_API_URL (or --api-url), or start mailbridge dev' };
    const [routes, domains] = await Promise.all([
      allPages((page) => api.listRoutes(page)),
      allPages((page) => api.listDomains(page)),
    ]);
    return {
      url: api.url,
      routes: routes.filter((route) => route.source === 'api'),
      domains: domains.filter((domain) => domain.source === 'api'),
    };
  } catch (error) {
    const explained = explainApiError(error);
    if (explained instanceof CliError) return { error: explained.message };
    throw explained;
  }
}

/** An API route as the listener's index holds it; `routes check` signs nothing, so no secret. */
function indexedRoute(view: RouteView): Route {
  const {
    source: _source,
    revision: _revision,
    createdAt: _createdAt,
    signingSecrets: _secrets,
    ...route
  } = view;
  return { ...route, secret: [] };
}

/**
 * The RCPT decision the listener makes: its index over the config plus the API's routes and
 * domains, with the config's setting for domains not verified yet.
 */
function listenerIndex(config: Config, api: ApiRecipients | undefined): RcptIndex {
  const index = new RcptIndex(config, {
    acceptUnverifiedDomains: config.controlPlane.acceptUnverifiedDomains,
  });
  for (const view of api?.routes ?? []) index.putRoute(indexedRoute(view), view.createdAt ?? '');
  for (const domain of api?.domains ?? []) index.putDomain(domain.name, domain.status);
  return index;
}

interface RouteAddOptions extends ApiOptions {
  id?: string;
  match: string[];
  endpoint: string[];
  attachments?: 'inline' | 'url';
  timeout?: number;
}

/** `mailbridge routes check|list|add|rm`. */
export function registerRoutes(program: Command): void {
  const routes = program
    .command('routes')
    .description('routes: where addresses go (check a config; list, add, remove through the API)');
  const checkCommand = routes
    .command('check')
    .description(
      "validate a config; for each address show its route and endpoints, or the SMTP reply the listener gives it (exit 1 if any is refused), over the config's routes and domains and the API's when the API can be read; each endpoint's health when it can be read (the local emulator by default, or --aws)",
    )
    .argument('[address...]', 'recipient addresses to try')
    .option(
      '--config <file>',
      'config file (JSON or YAML) (default: the one the running `mailbridge dev` uses, else dev/mailbridge.yaml)',
    )
    .addOption(
      new Option(
        '--runtime <runtime>',
        'validate for where it runs (aws refuses inline secrets, http endpoints)',
      )
        .choices(['local', 'aws'])
        .default('local'),
    )
    .option('--json', 'print JSON');
  withApiAccessOptions(withConnectionOptions(checkCommand)).action(
    async (addresses: string[], options: RoutesOptions) => {
      const connection = await connect(options);
      try {
        await checkRoutes(connection, addresses, options);
      } finally {
        connection.close();
      }
    },
  );

  withApiOptions(
    routes
      .command('list')
      .description("routes in force: the config file's (read-only) and the API's")
      .option('--limit <n>', 'API routes per page (at most 100)', positiveInt)
      .option('--cursor <cursor>', 'the page after a previous one (printed under it)'),
  ).action(async (options: ApiOptions & { limit?: number; cursor?: string }) => {
    const page = await withApi(options, '', (api) =>
      api.listRoutes({ limit: options.limit, cursor: options.cursor }),
    );
    if (options.json) return printJson(page);
    const rows = page.items.map((route) => [
      route.id,
      route.source,
      route.match.join(' '),
      route.endpoints.join(' '),
    ]);
    for (const line of formatTable([['ID', 'SOURCE', 'MATCH', 'ENDPOINTS'], ...rows])) console.log(line);
    printNextPage(page.nextCursor);
  });

  withApiOptions(
    routes
      .command('add')
      .description(
        'add a route through the API: in force at RCPT within seconds; prints its signing secret once',
      )
      .requiredOption('--match <pattern>', 'address, *@domain, glob or /regex/; repeatable', collect)
      .requiredOption('--endpoint <url>', 'webhook URL; repeatable', collect)
      .option('--id <id>', 'route id (default: generated)')
      .addOption(
        new Option('--attachments <mode>', 'inline (base64, when small) or url').choices(['inline', 'url']),
      )
      .option('--timeout <seconds>', 'per-try request timeout', seconds),
  ).action(async (options: RouteAddOptions) => {
    const created = await withApi(options, '', (api) =>
      api.createRoute({
        ...(options.id ? { id: options.id } : {}),
        match: options.match,
        endpoints: options.endpoint,
        ...(options.attachments ? { attachments: { mode: options.attachments } } : {}),
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
      }),
    );
    if (options.json) return printJson(created);
    console.log(`route ${created.id} added: ${created.match.join(' ')} → ${created.endpoints.join(' ')}`);
    console.log(`signing secret (shown only now): ${created.signingSecret}`);
  });

  withApiOptions(
    routes
      .command('rm')
      .description(
        'remove an API route: its addresses get 550 5.1.1 within seconds (config routes: edit the file)',
      )
      .argument('<id>', 'route id'),
  ).action(async (id: string, options: ApiOptions) => {
    await withApi(options, 'mailbridge routes list shows the routes', (api) => api.deleteRoute(id));
    if (options.json) return printJson({ id, deleted: true });
    console.log(`route ${id} removed`);
  });
}

/** `routes check` on one connection: exit 1 (a CliError) when the config is bad or an address is refused. */
async function checkRoutes(
  connection: Connection,
  addresses: readonly string[],
  options: RoutesOptions,
): Promise<void> {
  let config: Config;
  let source: string;
  try {
    ({ config, source } = await configInUse(connection, options.config, options.runtime));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    if (options.json) printJson({ valid: false, source: options.config ?? null, issues: error.issues });
    throw new CliError(options.json ? '' : error.message);
  }
  const api = await readApiRecipients(options);
  const [fromApi, apiError] = 'error' in api ? [undefined, api.error] : [api, undefined];
  const index = listenerIndex(config, fromApi);
  const results = addresses.map((address) => check(index, address));
  const summary = [
    ...config.routes.map((route) => ({ ...route, source: 'config' as const })),
    ...(fromApi?.routes ?? []),
  ].map(({ id, source, match, endpoints }) => ({ id, source, match, endpoints }));
  const health = await readHealth(connection, [...new Set(summary.flatMap((route) => route.endpoints))]);
  if (options.json) {
    printJson({
      valid: true,
      source,
      ...(fromApi
        ? {
            api: { url: fromApi.url, domains: fromApi.domains.map(({ name, status }) => ({ name, status })) },
          }
        : { api: null, apiError }),
      routes: summary,
      addresses: results,
      ...('error' in health ? { health: null, healthError: health.error } : { health: health.statuses }),
    });
  } else {
    const disabled = new Set(
      'error' in health ? [] : health.statuses.filter((s) => s.status === 'disabled').map((s) => s.endpoint),
    );
    const mark = (endpoint: string) => (disabled.has(endpoint) ? `${endpoint} (disabled)` : endpoint);
    console.log(`${source}: valid, ${config.routes.length} route(s), domains ${config.domains.join(', ')}`);
    console.log(
      fromApi
        ? `API ${fromApi.url}: ${fromApi.routes.length} route(s), domains ${fromApi.domains.map((d) => `${d.name} (${d.status})`).join(', ') || 'none'}`
        : `checked the config only (${apiError})`,
    );
    if (addresses.length === 0) {
      for (const line of formatTable(
        summary.map((route) => [route.id, route.source, route.match.join(' '), route.endpoints.join(' ')]),
      ))
        console.log(`  ${line}`);
    }
    for (const result of results) {
      console.log(
        result.accepted
          ? `${result.address} → route ${result.route} → ${result.endpoints.map(mark).join(', ')}`
          : `${result.address} → ${result.reply}`,
      );
    }
    if ('error' in health) {
      console.log(`endpoint health: not read (${health.error})`);
    } else {
      console.log(`endpoint health (${health.where}):`);
      for (const line of formatTable(
        health.statuses.map((status) => [status.endpoint, describeHealth(status)]),
      ))
        console.log(`  ${line}`);
    }
  }
  const refused = results.filter((result) => !result.accepted).length;
  if (refused > 0) throw new CliError(options.json ? '' : `${refused} address(es) refused`);
}
