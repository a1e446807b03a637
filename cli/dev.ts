import type { Command } from 'commander';
import { ConfigError, MailbridgeError } from '../core/index.ts';
import type { LocalPorts, LocalRuntime } from '../dev/index.ts';
import { PORT_VARIABLES } from '../dev/runtime-state.ts';
import { CliError, DEFAULT_DATA_DIR } from './output.ts';

/** Port overrides from the environment; a bad value names its variable. */
function portsFromEnv(env: NodeJS.ProcessEnv): LocalPorts {
  const ports: LocalPorts = {};
  const issues: string[] = [];
  for (const [key, variable] of Object.entries(PORT_VARIABLES) as [keyof LocalPorts, string][]) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    const port = Number(value);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      issues.push(`${variable}: expected a port number 0-65535, got "${value}"`);
    } else {
      ports[key] = port;
    }
  }
  if (issues.length > 0) throw new ConfigError('environment', issues);
  return ports;
}

/**
 * Runs the local pipeline until SIGINT or SIGTERM, then drains in-flight work and exits 0; a second
 * signal exits 1 at once. Prints the banner of {@link describeRuntime}.
 */
async function serve(options: DevOptions): Promise<void> {
  // EMF metrics are JSON lines too: only with the JSON logs.
  if (!options.jsonLogs) process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const { describeRuntime, startLocalRuntime } = await import('../dev/index.ts');
  let runtime: LocalRuntime;
  try {
    runtime = await startLocalRuntime({
      ...(options.config ? { configFile: options.config } : {}),
      dataDir: options.dataDir,
      ports: portsFromEnv(process.env),
      console: { json: options.jsonLogs === true },
    });
  } catch (error) {
    throw new CliError(
      error instanceof MailbridgeError ? error.message : `mailbridge failed to start: ${String(error)}`,
    );
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      console.error(`${signal} again: exiting without draining`);
      process.exit(1);
    }
    stopping = true;
    console.error(`${signal}: stopping the listener, draining in-flight work (${signal} again forces exit)`);
    runtime.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // Only now: a script that waits for the banner may signal at once.
  for (const line of describeRuntime(runtime)) console.log(line);
  if (!options.jsonLogs) {
    console.log(
      'one line per message accepted, delivered, retried or failed follows (--json-logs for JSON logs and EMF metrics)',
    );
  }
}

interface DevOptions {
  config?: string;
  dataDir: string;
  jsonLogs?: boolean;
}

/** `mailbridge dev`: what `npm start` runs. */
export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('run the whole pipeline locally: emulator, listener, parse and deliver functions, dev inbox')
    .option('--config <file>', 'config file (JSON or YAML) (default: dev/mailbridge.yaml)')
    .option(
      '--data-dir <dir>',
      'where stored mail and queues are kept across restarts (env MAILBRIDGE_DATA_DIR)',
      DEFAULT_DATA_DIR,
    )
    .option('--json-logs', 'log JSON lines and EMF metrics as in AWS, instead of one line per message')
    .addHelpText(
      'after',
      `\nPorts: ${Object.values(PORT_VARIABLES).join(', ')} override the config's (0 picks a free one).`,
    )
    .action((options: DevOptions) => serve(options));
}
