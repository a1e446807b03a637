import { Transform, type TransformCallback } from 'node:stream';
import type { StreamSink } from './sink.ts';

/** Time limits of a {@link ScanTee}. */
export interface ScanTeeOptions {
  /** How long a sink may ask the stream to wait (TCP backpressure) before it is cut off. */
  readonly stallMs: number;
  /** How long the sinks may take after the end of the stream; then the rest are cut off. */
  readonly budgetMs: number;
  /**
   * Called at the end of the input, after the sinks were told to finish: the stream ends when it
   * resolves, with the error it resolves to if any (a refusal: what follows never sees the end).
   */
  readonly beforeEnd?: () => Promise<Error | null>;
}

/**
 * A pass-through placed in the DATA → S3 pipeline that gives every chunk to each sink as well.
 * It holds nothing itself: a chunk goes on to S3 once every sink has taken it, which is plain
 * backpressure while the scanners keep up; a sink that makes the stream wait longer than
 * `stallMs` is cut off (`unavailable`, reason `stalled`), so a slow or hung scanner costs the
 * upload at most that once. At the end of the stream the sinks are told to finish; the upload
 * waits for them only through `beforeEnd`. {@link settled} resolves when every sink has its result, or when the
 * budget runs out and the late ones are cut off (`timeout`).
 */
export class ScanTee extends Transform {
  readonly #sinks: readonly StreamSink<unknown>[];
  readonly #options: ScanTeeOptions;
  readonly #settled: Promise<void>;
  #startBudget!: () => void;

  constructor(sinks: readonly StreamSink<unknown>[], options: ScanTeeOptions) {
    super();
    this.#sinks = sinks;
    this.#options = options;
    const ended = new Promise<void>((resolve) => {
      this.#startBudget = resolve;
    });
    this.#settled = ended.then(() => this.#awaitSinks());
    // A stream that fails or is abandoned (client gone, too large) leaves nothing to scan.
    this.once('close', () => {
      if (!this.writableFinished) for (const sink of sinks) sink.abort('error', 'message not received whole');
      this.#startBudget();
    });
  }

  /** Resolves once every sink is settled or cut off; never rejects. */
  settled(): Promise<void> {
    return this.#settled;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const waiting = this.#sinks.filter((sink) => !sink.write(chunk));
    if (waiting.length === 0) {
      callback(null, chunk);
      return;
    }
    void Promise.all(waiting.map((sink) => this.#drainOrCut(sink))).then(() => callback(null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    for (const sink of this.#sinks) sink.end();
    this.#startBudget();
    const beforeEnd = this.#options.beforeEnd ?? (() => Promise.resolve(null));
    beforeEnd().then(
      (error) => callback(error),
      (error: Error) => callback(error),
    );
  }

  async #drainOrCut(sink: StreamSink<unknown>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        sink.abort('stalled', `took no data for ${this.#options.stallMs} ms`);
        resolve();
      }, this.#options.stallMs);
    });
    await Promise.race([sink.drained(), stalled]);
    clearTimeout(timer);
  }

  async #awaitSinks(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const sink of this.#sinks)
          sink.abort('timeout', `no verdict within ${this.#options.budgetMs} ms`);
        resolve();
      }, this.#options.budgetMs);
    });
    await Promise.race([Promise.all(this.#sinks.map((sink) => sink.result)), budget]);
    clearTimeout(timer);
  }
}
