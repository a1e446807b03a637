import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '..', '..', 'cli', 'main.ts');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node cli/main.ts …args` as a child process, with `input` on stdin, and collects its output. */
export async function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(options.input ?? '');
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** Starts the CLI and resolves once its stderr contains `ready`; `done` resolves with the result. */
export async function startCli(
  args: readonly string[],
  ready: string,
  options: { env?: Record<string, string> } = {},
): Promise<{ done: Promise<CliResult>; kill(signal: NodeJS.Signals): void; stdout(): string }> {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const done = once(child, 'close').then(([code, signal]) => ({
    code: code as number | null,
    stdout,
    stderr: stderr + (signal ? ` [signal ${signal}]` : ''),
  }));
  await new Promise<void>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (stderr.includes(ready) || stdout.includes(ready)) resolve();
    });
    child.stdout.on('data', () => {
      if (stdout.includes(ready)) resolve();
    });
    void done.then((result) =>
      reject(new Error(`exited ${result.code} before "${ready}": ${result.stderr}`)),
    );
  });
  return { done, kill: (signal) => child.kill(signal), stdout: () => stdout };
}
