import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';

/** The config `npm start` uses when given none. */
export const LOCAL_CONFIG_FILE = join(import.meta.dirname, '..', 'dev', 'mailbridge.yaml');

/** Where `npm start` keeps stored mail, queues and its record for the other commands. */
export const DEFAULT_DATA_DIR =
  process.env.MAILBRIDGE_DATA_DIR || join(import.meta.dirname, '..', '.mailbridge', 'data');

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A failure or a finding: the message goes to stderr and the command exits with 1 (or `exitCode`). */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.failure, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/** A bad combination of arguments that commander cannot see by itself: exit 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** Prints one value as JSON on stdout (pretty only for people). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, process.stdout.isTTY ? 2 : undefined)}\n`);
}

/** Columns padded to the widest cell, for human output. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** Counts work done; draws a bar on stderr only when stdout is a terminal and output is for people. */
export interface Progress {
  /** Whether a bar is drawn; other output waits until `stop()` so as not to garble it. */
  readonly drawing: boolean;
  tick(): void;
  stop(): void;
}

export function startProgress(total: number, label: string, options: { json: boolean }): Progress {
  if (!process.stdout.isTTY || options.json || total < 2) return { drawing: false, tick() {}, stop() {} };
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} {eta_formatted}`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(total, 0);
  return { drawing: true, tick: () => bar.increment(), stop: () => bar.stop() };
}

/** Collects a repeatable option's values (commander's variadic-by-repetition). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Parses a positive integer option value; anything else is a usage error. */
export function positiveInt(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('expected a positive integer');
  return number;
}

/** Parses a non-negative number of seconds; anything else is a usage error. */
export function seconds(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0)
    throw new InvalidArgumentError('expected seconds (a number ≥ 0)');
  return number;
}
