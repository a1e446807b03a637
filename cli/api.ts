import { readFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  type ApiClient,
  ApiClientError,
  ApiUnreachableError,
  apiClient,
  isApiKeyShaped,
} from '../core/control/index.ts';
import { CliError, DEFAULT_DATA_DIR } from './output.ts';

/** The flags of every command that talks to the control plane API. */
export interface ApiOptions {
  apiUrl?: string;
  apiKey?: string;
  dataDir?: string;
  json?: boolean;
}

export const NO_API_KEY = 'no API key: set MAILBRIDGE_API_KEY (or --api-key), or run mailbridge keys create';

/** Adds `--api-url` and `--api-key`. */
export function withApiAccessOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--api-url <url>',
        "control plane API (the stack output ApiUrl; default: the running `mailbridge dev`'s)",
      ).env('MAILBRIDGE_API_URL'),
    )
    .addOption(
      new Option('--api-key <key>', "API key mbk_… (default: the running `mailbridge dev`'s dev key)").env(
        'MAILBRIDGE_API_KEY',
      ),
    );
}

/** Adds `--api-url`, `--api-key`, `--data-dir` and `--json`. */
export function withApiOptions(command: Command): Command {
  return withApiAccessOptions(command)
    .option(
      '--data-dir <dir>',
      'data folder of the running `mailbridge dev`, whose API and dev key are used (env MAILBRIDGE_DATA_DIR)',
      DEFAULT_DATA_DIR,
    )
    .option('--json', 'print JSON');
}

/** The API key given, else the dev key of the runtime running in the data folder; undefined when neither. */
export async function apiKeyInUse(options: ApiOptions): Promise<string | undefined> {
  if (options.apiKey) return options.apiKey;
  const keyFile = (await runningRuntime(options))?.api?.keyFile;
  if (!keyFile) return undefined;
  return (await readFile(keyFile, 'utf8').catch(() => '')).trim() || undefined;
}

async function runningRuntime(options: ApiOptions) {
  const { findRunningRuntime } = await import('../dev/index.ts');
  return findRunningRuntime(options.dataDir ?? DEFAULT_DATA_DIR);
}

/**
 * A client of the API the options name (`--api-url`/`MAILBRIDGE_API_URL`, else the running
 * `mailbridge dev`'s), or undefined when none is named. Its key is `--api-key`/`MAILBRIDGE_API_KEY`,
 * else that runtime's dev key; a missing key is a failure that says how to get one.
 */
export async function apiInUse(options: ApiOptions): Promise<ApiClient | undefined> {
  const url = options.apiUrl ?? (await runningRuntime(options))?.api?.url;
  if (!url) return undefined;
  const key = await apiKeyInUse(options);
  if (!key) throw new CliError(NO_API_KEY);
  // Checked here, never echoed: a key pasted with a line break would otherwise reach fetch, whose
  // error prints the whole header value (the key) into the terminal or a CI log.
  if (!isApiKeyShaped(key)) {
    throw new CliError(
      `the API key is not a mailbridge key (mbk_ and 43 letters, digits, - or _; this one has ${key.length} characters): check MAILBRIDGE_API_KEY or --api-key`,
    );
  }
  return apiClient({ url, key });
}

/** {@link apiInUse}, failing with how to name an API when none is. */
export async function connectApi(options: ApiOptions): Promise<ApiClient> {
  const api = await apiInUse(options);
  if (!api) {
    throw new CliError(
      `no API URL: set MAILBRIDGE_API_URL (or --api-url; in AWS the stack output ApiUrl), or start mailbridge dev (npm start) with its data folder at ${options.dataDir ?? DEFAULT_DATA_DIR}`,
    );
  }
  return api;
}

/**
 * What a failed API call means for the person at the terminal, on one line: the API's own message,
 * its status, and what to do. `notFoundHint` says how to find what exists.
 */
export function explainApiError(error: unknown, notFoundHint = ''): unknown {
  if (error instanceof ApiUnreachableError) {
    return new CliError(
      `${error.message}: is mailbridge dev running (npm start)? Otherwise set MAILBRIDGE_API_URL`,
    );
  }
  if (!(error instanceof ApiClientError)) return error;
  switch (error.status) {
    case 401:
      return new CliError(
        'the API refused the key (401): it is revoked or mistyped; set MAILBRIDGE_API_KEY to a valid key, or run mailbridge keys create',
      );
    case 403:
      return new CliError(
        `${error.message} (403): this needs a full-scope key (mailbridge keys create --scope full)`,
      );
    case 404:
      return new CliError(`${error.message} (404)${notFoundHint ? `: ${notFoundHint}` : ''}`);
    default:
      return new CliError(`${error.message} (${error.status} ${error.code})`);
  }
}

/** Runs `work` with the API client, turning API errors into one-line CLI errors. */
export async function withApi<T>(
  options: ApiOptions,
  notFoundHint: string,
  work: (api: ApiClient) => Promise<T>,
): Promise<T> {
  const api = await connectApi(options);
  try {
    return await work(api);
  } catch (error) {
    throw explainApiError(error, notFoundHint);
  }
}

/**
 * Parses a time option: an ISO 8601 date-time, or an age such as `90s`, `15m`, `2h`, `7d` (that
 * long before now). Answers ISO 8601 in UTC, as the API takes it.
 */
export function timeOption(value: string): string {
  const age = /^(\d+)([smhd])$/.exec(value);
  if (age) {
    const seconds = Number(age[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[age[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(Date.now() - seconds * 1000).toISOString();
  }
  const time = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\d/.test(value) || Number.isNaN(time)) {
    throw new InvalidArgumentError(
      'expected an ISO 8601 time (2026-05-01T12:00:00Z) or an age (15m, 2h, 7d)',
    );
  }
  return new Date(time).toISOString();
}

/** After a page for people: how to ask for the next one, when there is one. */
export function printNextPage(nextCursor: string | null): void {
  if (nextCursor) console.log(`more: run again with --cursor ${nextCursor}`);
}
