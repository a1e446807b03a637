import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../core/index.ts';
import { describeRuntime, type LocalPorts, type LocalRuntime, startLocalRuntime } from './runtime.ts';

const PORT_VARIABLES: Record<keyof LocalPorts, string> = {
  smtp: 'MAILBRIDGE_SMTP_PORT',
  submission: 'MAILBRIDGE_SUBMISSION_PORT',
  smtps: 'MAILBRIDGE_SMTPS_PORT',
  inbox: 'MAILBRIDGE_INBOX_PORT',
  health: 'MAILBRIDGE_HEALTH_PORT',
  emulator: 'MAILBRIDGE_EMULATOR_PORT',
};

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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  let runtime: LocalRuntime;
  try {
    runtime = await startLocalRuntime({
      ...(values.config ? { configFile: values.config } : {}),
      dataDir: process.env.MAILBRIDGE_DATA_DIR || join(import.meta.dirname, '..', '.mailbridge', 'data'),
      ports: portsFromEnv(process.env),
    });
  } catch (error) {
    console.error(
      error instanceof ConfigError ? error.message : `mailbridge failed to start: ${String(error)}`,
    );
    process.exit(1);
  }
  for (const line of describeRuntime(runtime)) console.log(line);

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
}

await main();
