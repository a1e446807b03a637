import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '..', '..', 'cli', 'main.js');
const NO_RUNTIME = join(tmpdir(), 'mailbridge-test-no-runtime');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Spawns `node cli/main.js …args`, collecting its output as it comes; `done` resolves with the result. */
function spawnCli(
  args: readonly string[],
  env: Record<string, string> | undefined,
  stdin: 'pipe' | 'ignore',
): { child: ChildProcess; output(): { stdout: string; stderr: string }; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [MAIN, ...args], {
    // No `mailbridge dev` the developer may be running is found, unless a test names its data folder.
    env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', MAILBRIDGE_DATA_DIR: NO_RUNTIME, ...env },
    stdio: [stdin, 'pipe', 'pipe'],
    // A command that hangs fails its test in two minutes, not at the runner's timeout.
    timeout: 120_000,
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = once(child, 'close').then(([code, signal]) => ({
    code: code as number | null,
    stdout,
    stderr: stderr + (signal ? ` [signal ${signal}]` : ''),
  }));
  return { child, output: () => ({ stdout, stderr }), done };
}

/** Runs `node cli/main.js …args` as a child process, with `input` on stdin, and collects its output. */
export async function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<CliResult> {
  const { child, done } = spawnCli(args, options.env, 'pipe');
  child.stdin!.end(options.input ?? '');
  return done;
}

/**
 * Starts the CLI and resolves once its output contains `ready`; `done` resolves with the result. A CLI
 * that has not said it within `readyMs` is killed and the start fails, in seconds rather than at the
 * test runner's timeout.
 */
export async function startCli(
  args: readonly string[],
  ready: string,
  options: { env?: Record<string, string>; readyMs?: number } = {},
): Promise<{ done: Promise<CliResult>; kill(signal: NodeJS.Signals): void; stdout(): string }> {
  const { child, output, done } = spawnCli(args, options.env, 'ignore');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "${ready}" within ${options.readyMs ?? 30_000} ms: ${JSON.stringify(output())}`));
    }, options.readyMs ?? 30_000);
    const check = () => {
      const { stdout, stderr } = output();
      if (stderr.includes(ready) || stdout.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    void done.then((result) => {
      clearTimeout(timer);
      reject(new Error(`exited ${result.code} before "${ready}": ${result.stderr}`));
    });
  });
  return { done, kill: (signal) => child.kill(signal), stdout: () => output().stdout };
}

/** The JSON lines a command printed (`tail --json`), one document each. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
