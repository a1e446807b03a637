import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import type { LocalPorts } from './runtime.ts';

/** The environment variable that overrides each port of `mailbridge dev`. */
export const PORT_VARIABLES: Readonly<Record<keyof LocalPorts, string>> = {
  smtp: 'MAILBRIDGE_SMTP_PORT',
  submission: 'MAILBRIDGE_SUBMISSION_PORT',
  smtps: 'MAILBRIDGE_SMTPS_PORT',
  inbox: 'MAILBRIDGE_INBOX_PORT',
  health: 'MAILBRIDGE_HEALTH_PORT',
  emulator: 'MAILBRIDGE_EMULATOR_PORT',
  api: 'MAILBRIDGE_API_PORT',
};

/**
 * What a running `mailbridge dev` records in its data folder, so that the other commands
 * (`routes check`, `replay`, `tail`, `dlq`, the API commands) work on that runtime: its config, its
 * addresses and where its dev API key is.
 */
const RunningRuntimeSchema = z.object({
  pid: z.number().int(),
  startedAt: z.string(),
  /** The config file it was started with. */
  configFile: z.string(),
  /** The config in effect (port overrides applied, dev-inbox endpoints on the inbox's port). */
  config: z.record(z.string(), z.unknown()),
  /** The emulator's endpoint, e.g. `http://127.0.0.1:4566`. */
  emulator: z.string(),
  /** The dev inbox's base URL. */
  inbox: z.string(),
  /** Its message events (accepted, delivered, retry, failed) as JSON lines: dev/message-events.ts. */
  eventsFile: z.string(),
  /** The control plane API: its base URL (the API is under `/v1`) and the file holding the dev key. */
  api: z.object({ url: z.string(), keyFile: z.string() }),
  /** Its control plane store (the embedded DynamoDB-compatible one), where the CLI logs what it re-queues. */
  control: z.object({ endpoint: z.string(), table: z.string() }),
});
export type RunningRuntime = z.infer<typeof RunningRuntimeSchema>;

const RUNTIME_FILE = 'runtime.json';

/** Records the running runtime in its data folder; returns a function that removes the record. */
export async function recordRunningRuntime(
  dataDir: string,
  runtime: Omit<RunningRuntime, 'pid' | 'startedAt'>,
): Promise<() => Promise<void>> {
  const file = join(dataDir, RUNTIME_FILE);
  const record: RunningRuntime = { pid: process.pid, startedAt: new Date().toISOString(), ...runtime };
  // Mode 0600: the config may hold local secrets inline.
  await writeFile(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  return () => rm(file, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The runtime running with this data folder, or undefined when none is: no record, or the record
 * of one that died without removing it.
 */
export async function findRunningRuntime(dataDir: string): Promise<RunningRuntime | undefined> {
  let record: RunningRuntime;
  try {
    record = RunningRuntimeSchema.parse(JSON.parse(await readFile(join(dataDir, RUNTIME_FILE), 'utf8')));
  } catch {
    // None, or one cut short by a crash mid-write: nothing to go by.
    return undefined;
  }
  return alive(record.pid) ? record : undefined;
}
