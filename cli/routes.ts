import { type Command, Option } from 'commander';
import { ConfigError, loadConfigFile, Router, SmtpError } from '../core/index.ts';
import { CliError, formatTable, LOCAL_CONFIG_FILE, printJson } from './output.ts';

interface RoutesOptions {
  config: string;
  runtime: 'local' | 'aws';
  json?: boolean;
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

function check(router: Router, address: string): AddressResult {
  try {
    const { route } = router.resolve(address);
    return { address, accepted: true, route: route.id, endpoints: route.endpoints };
  } catch (error) {
    if (!(error instanceof SmtpError)) throw error;
    return { address, accepted: false, reply: `${error.responseCode} ${error.message}` };
  }
}

/** `mailbridge routes check`. */
export function registerRoutes(program: Command): void {
  const routes = program.command('routes').description('configured routes and where addresses go');
  routes
    .command('check')
    .description(
      'validate a config; for each address show its route and endpoints, or the SMTP reply it gets (exit 1 if any is refused)',
    )
    .argument('[address...]', 'recipient addresses to try')
    .option('--config <file>', 'config file (JSON or YAML)', LOCAL_CONFIG_FILE)
    .addOption(
      new Option(
        '--runtime <runtime>',
        'validate for where it runs (aws refuses inline secrets, http endpoints)',
      )
        .choices(['local', 'aws'])
        .default('local'),
    )
    .option('--json', 'print JSON')
    .action(async (addresses: string[], options: RoutesOptions) => {
      let config: Awaited<ReturnType<typeof loadConfigFile>>;
      try {
        config = await loadConfigFile(options.config, options.runtime);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        if (options.json) printJson({ valid: false, source: options.config, issues: error.issues });
        throw new CliError(options.json ? '' : error.message);
      }
      const router = new Router(config);
      const results = addresses.map((address) => check(router, address));
      const summary = config.routes.map((route) => ({
        id: route.id,
        match: route.match,
        endpoints: route.endpoints,
      }));
      if (options.json) {
        printJson({ valid: true, source: options.config, routes: summary, addresses: results });
      } else {
        console.log(
          `${options.config}: valid, ${config.routes.length} route(s), domains ${config.domains.join(', ')}`,
        );
        if (addresses.length === 0) {
          for (const line of formatTable(
            summary.map((route) => [route.id, route.match.join(' '), route.endpoints.join(' ')]),
          ))
            console.log(`  ${line}`);
        }
        for (const result of results) {
          console.log(
            result.accepted
              ? `${result.address} → route ${result.route} → ${result.endpoints.join(', ')}`
              : `${result.address} → ${result.reply}`,
          );
        }
      }
      const refused = results.filter((result) => !result.accepted).length;
      if (refused > 0) throw new CliError(options.json ? '' : `${refused} address(es) refused`);
    });
}
