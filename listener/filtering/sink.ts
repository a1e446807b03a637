import type { UnavailableReason } from '../../core/filtering/index.ts';

/**
 * One consumer of the DATA stream beside the S3 upload (a scanner, the DKIM hasher). It is fed
 * chunk by chunk, never holds the message beyond its socket buffers, and its `result` never
 * rejects: whatever fails, the result says `unavailable` with a reason.
 */
export interface StreamSink<R> {
  /** Sends one chunk; false when the sink asks the caller to wait for {@link drained}. */
  write(chunk: Buffer): boolean;
  /** Resolves once the sink can take more (at once when it can already, or when it is settled). */
  drained(): Promise<void>;
  /** No more chunks: the sink asks for its verdict. */
  end(): void;
  /** Gives up: the connection is closed and the result becomes `unavailable` (if not settled yet). */
  abort(reason: UnavailableReason, detail?: string): void;
  /** Whether the result is known (a verdict, or unavailable). */
  readonly settled: boolean;
  readonly result: Promise<R>;
}

/** The part of a sink every implementation shares: settling once, and the drain wait. */
export class SinkState<R> {
  settled = false;
  readonly result: Promise<R>;
  #resolve!: (value: R) => void;
  #waiters: (() => void)[] = [];

  constructor() {
    this.result = new Promise<R>((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Settles the result (the first call wins) and releases whoever waits for a drain. */
  settle(value: R): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(value);
    this.drain();
  }

  /** A promise for the next {@link drain}, or an already resolved one once settled. */
  waitForDrain(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  drain(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
