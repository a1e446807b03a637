import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';

// Every part under test runs in a process of its own, so a load generator, an emulator and a server
// never share one event loop, and each process's peak RSS can be read from /proc.

type Handler = (args: never) => unknown;
type Request = { id: number; command: string; args: unknown };
type Response = { id: number; ok: boolean; value?: unknown; error?: string };

/** In a child: answers the parent's calls with `handlers`; exits when the parent goes away. */
export function serve(handlers: Record<string, Handler>, ready: unknown = {}): void {
  process.on('message', (message: Request) => {
    const handler = handlers[message.command];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown command ${message.command}`);
        return (handler as (args: unknown) => unknown)(message.args);
      })
      .then(
        (value) => process.send?.({ id: message.id, ok: true, value } satisfies Response),
        (error: unknown) =>
          process.send?.({ id: message.id, ok: false, error: String((error as Error)?.stack ?? error) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ id: 0, ok: true, value: ready } satisfies Response);
}

/** A forked bench process that answers calls. */
export class Worker<Ready = unknown> {
  readonly child: ChildProcess;
  readonly ready: Promise<Ready>;
  #next = 1;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();

  constructor(file: string, args: string[] = [], execArgv: string[] = []) {
    this.child = fork(new URL(file, import.meta.url), args, {
      execArgv,
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let onReady: (value: Ready) => void = () => {};
    let onFail: (error: Error) => void = () => {};
    this.ready = new Promise<Ready>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    this.child.on('message', (message: Response) => {
      if (message.id === 0) return onReady(message.value as Ready);
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) pending?.resolve(message.value);
      else pending?.reject(new Error(message.error));
    });
    this.child.on('exit', (code) => {
      const error = new Error(`${file} exited with ${code}`);
      onFail(error);
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    });
  }

  call<T>(command: string, args: unknown = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ id, command, args } satisfies Request);
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Resident and peak resident memory of a process, MiB, from /proc (Linux). */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** Resets the peak (VmHWM) of a process to its current RSS. */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Finds an executable on PATH. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const path = `${dir}/${name}`;
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}
