import { setTimeout as sleep } from 'node:timers/promises';
import { monotonicFactory } from 'ulid';
import type { ControlMetricName } from '../metric-names.ts';
import type { Logger, Metrics } from '../observability.ts';
import { MetricUnit } from '../observability.ts';
import { StoreRejectedError } from './errors.ts';
import type { Refusal, TimelineEvent } from './schemas.ts';
import type { LogEntry, MessageLogStore, ObjectRef } from './store.ts';

const MAX_EVENTS_PER_WRITE = 50;

export interface MessageLogWriterOptions {
  /** Events held at most, waiting or being retried; beyond it new ones are dropped and counted. @default 10000 */
  maxPending?: number;
  /** How long an event waits for others to share its write. @default 100 */
  batchDelayMs?: number;
  /** Messages written at once. @default 8 */
  concurrency?: number;
  /** First and longest wait between tries after a failed write. @default 200, 30000 */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Refusals recorded per client address per minute, and in all per minute; the rest are counted. @default 10, 100 */
  refusalsPerClientPerMinute?: number;
  refusalsPerMinute?: number;
  now?: () => Date;
  logger?: Logger;
  metrics?: Metrics;
}

/** Counters since the writer started. */
export interface MessageLogWriterStats {
  pending: number;
  written: number;
  failedWrites: number;
  dropped: number;
  /** Events and refusals the store refused for good, dropped without a retry. */
  rejected: number;
  refusalsSampledOut: number;
}

/**
 * Writes the message log for the pipeline without ever standing in its way: {@link record} and
 * {@link refused} return at once and never throw; events are batched per message (one store write
 * carries all of a message's pending events), written a few messages at a time, and retried with
 * exponential backoff while the store fails. A write the store refuses for good (an invalid item, an
 * IAM denial: {@link StoreRejectedError}) is not retried: it is dropped, counted and logged once
 * with the message id, and the writer goes on. Memory is bounded: past `maxPending` events new ones
 * are dropped. Failed writes, drops, rejections and sampled-out refusals are EMF metrics. Store writes are
 * idempotent, so a retry after a lost answer stores nothing twice.
 *
 * Long-running processes (the listener) let it run; a Lambda handler awaits {@link flush} with a
 * deadline before it returns, since a frozen function sends nothing.
 */
export class MessageLogWriter {
  readonly #store: Pick<MessageLogStore, 'appendEvents' | 'putRefusals'>;
  readonly #options: Required<Omit<MessageLogWriterOptions, 'logger' | 'metrics'>> &
    Pick<MessageLogWriterOptions, 'logger' | 'metrics'>;
  readonly #nextEventId = monotonicFactory();
  readonly #pending = new Map<string, { entries: LogEntry[]; raw?: ObjectRef }>();
  /** Messages whose events are being written now (out of {@link #pending} until the write ends). */
  readonly #writing = new Set<string>();
  #refusals: Refusal[] = [];
  #refusalsInFlight = 0;
  readonly #refusalCounts = new Map<string, number>();
  #refusalMinute = '';
  #events = 0;
  #failuresInRow = 0;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #stats = { written: 0, failedWrites: 0, dropped: 0, rejected: 0, refusalsSampledOut: 0 };

  constructor(
    store: Pick<MessageLogStore, 'appendEvents' | 'putRefusals'>,
    options: MessageLogWriterOptions = {},
  ) {
    this.#store = store;
    this.#options = {
      maxPending: 10_000,
      batchDelayMs: 100,
      concurrency: 8,
      retryBaseMs: 200,
      retryMaxMs: 30_000,
      refusalsPerClientPerMinute: 10,
      refusalsPerMinute: 100,
      now: () => new Date(),
      ...options,
    };
  }

  get stats(): MessageLogWriterStats {
    return { pending: this.#events + this.#refusals.length + this.#refusalsInFlight, ...this.#stats };
  }

  /** Queues one timeline event of a message (and where its raw copy is, with `received`). */
  record(messageId: string, event: TimelineEvent, raw?: ObjectRef): void {
    try {
      if (this.#events + this.#refusals.length >= this.#options.maxPending) {
        this.#drop();
        return;
      }
      const batch = this.#pending.get(messageId) ?? { entries: [] };
      batch.entries.push({ eventId: this.#nextEventId(), event });
      if (raw) batch.raw = raw;
      this.#pending.set(messageId, batch);
      this.#events++;
      this.#schedule();
    } catch (error) {
      this.#options.logger?.error('message log event not queued', { messageId, error });
    }
  }

  /**
   * Queues an SMTP refusal, unless this minute already has its share from the same client or in
   * all: a spam run against unknown addresses costs a bounded number of writes.
   */
  refused(refusal: Refusal): void {
    try {
      const minute = refusal.at.slice(0, 16);
      if (minute !== this.#refusalMinute) {
        this.#refusalMinute = minute;
        this.#refusalCounts.clear();
      }
      const client = this.#refusalCounts.get(refusal.remoteAddress) ?? 0;
      const all = this.#refusalCounts.get('') ?? 0;
      if (client >= this.#options.refusalsPerClientPerMinute || all >= this.#options.refusalsPerMinute) {
        this.#stats.refusalsSampledOut++;
        this.#count('RefusalsSampledOut', 1);
        return;
      }
      if (this.#events + this.#refusals.length >= this.#options.maxPending) {
        this.#drop();
        return;
      }
      this.#refusalCounts.set(refusal.remoteAddress, client + 1);
      this.#refusalCounts.set('', all + 1);
      this.#refusals.push(refusal);
      this.#schedule();
    } catch (error) {
      this.#options.logger?.error('refusal not queued', { error });
    }
  }

  /**
   * Waits until everything queued so far is written, or `timeoutMs` passes; true when nothing is
   * left. Never throws.
   */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.stats.pending > 0 && Date.now() < deadline) {
      this.#running ??= this.#drain();
      await Promise.race([
        this.#running,
        sleep(Math.max(1, deadline - Date.now()), undefined, { ref: false }),
      ]);
    }
    return this.stats.pending === 0;
  }

  /**
   * Stops taking events and flushes what is queued (bounded by `timeoutMs`). What is still queued
   * then is lost with the process: counted as dropped and logged with the message ids, so the gap
   * in the log is seen (the mail itself is stored and queued already).
   */
  async close(timeoutMs = 5000): Promise<boolean> {
    this.#closed = true;
    if (await this.flush(timeoutMs)) return true;
    const { pending } = this.stats;
    this.#stats.dropped += pending;
    this.#count('ControlLogDropped', pending);
    this.#options.logger?.error('message log events not written before stopping', {
      events: pending,
      messageIds: [...new Set([...this.#writing, ...this.#pending.keys()])].slice(0, 100),
    });
    return false;
  }

  #drop(): void {
    this.#stats.dropped++;
    this.#count('ControlLogDropped', 1);
  }

  #count(metric: ControlMetricName, count: number): void {
    this.#options.metrics?.addMetric(metric, MetricUnit.Count, count);
  }

  #schedule(): void {
    if (this.#timer || this.#running || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running ??= this.#drain();
    }, this.#options.batchDelayMs);
    this.#timer.unref();
  }

  /** Writes until nothing is pending, backing off after failures; the only loop that writes. */
  async #drain(): Promise<void> {
    try {
      while (this.stats.pending > 0) {
        const ok = await this.#writeRound();
        if (ok) {
          this.#failuresInRow = 0;
          continue;
        }
        this.#failuresInRow++;
        this.#options.metrics?.publishStoredMetrics();
        const wait = Math.min(
          this.#options.retryMaxMs,
          this.#options.retryBaseMs * 2 ** (this.#failuresInRow - 1),
        );
        await sleep(wait * (0.5 + Math.random() / 2), undefined, { ref: false });
      }
    } finally {
      this.#running = undefined;
    }
  }

  /** One round: up to `concurrency` messages and the queued refusals. False when any write failed. */
  async #writeRound(): Promise<boolean> {
    const messages: [string, { entries: LogEntry[]; raw?: ObjectRef }][] = [];
    for (const [messageId, batch] of this.#pending) {
      if (messages.length === this.#options.concurrency) break;
      // One update expression holds a bounded number of events (DynamoDB: 4 KB of expression).
      const entries = batch.entries.splice(0, MAX_EVENTS_PER_WRITE);
      messages.push([messageId, { entries, raw: batch.raw }]);
      if (batch.entries.length === 0) this.#pending.delete(messageId);
    }
    for (const [messageId] of messages) this.#writing.add(messageId);
    const refusals = this.#refusals.splice(0, 25);
    this.#refusalsInFlight = refusals.length;
    const results = await Promise.allSettled([
      ...messages.map(([messageId, batch]) => this.#store.appendEvents(messageId, batch.entries, batch.raw)),
      refusals.length > 0 ? this.#store.putRefusals(refusals) : Promise.resolve(),
    ]);
    this.#refusalsInFlight = 0;
    this.#writing.clear();
    let ok = true;
    results.forEach((result, i) => {
      const message = messages[i];
      if (result.status === 'fulfilled') {
        if (message) {
          this.#events -= message[1].entries.length;
          this.#stats.written += message[1].entries.length;
        }
        return;
      }
      if (result.reason instanceof StoreRejectedError) {
        // Retrying cannot help, and a retry loop would hold every later event back.
        const count = message ? message[1].entries.length : refusals.length;
        if (message) this.#events -= count;
        this.#stats.rejected += count;
        this.#count('ControlLogRejected', count);
        this.#options.logger?.error('message log write refused by the store; dropped', {
          messageId: message?.[0],
          events: message ? message[1].entries.map((entry) => entry.event.type) : undefined,
          refusals: message ? undefined : count,
          error: result.reason,
        });
        return;
      }
      ok = false;
      this.#stats.failedWrites++;
      this.#count('ControlLogWriteFailures', 1);
      this.#options.logger?.warn('message log write failed; will retry', {
        messageId: message?.[0],
        error: result.reason,
      });
      if (!message) {
        this.#refusals.unshift(...refusals);
        return;
      }
      // Put it back ahead of newer events of the same message, which may have arrived meanwhile.
      const [messageId, batch] = message;
      const newer = this.#pending.get(messageId);
      this.#pending.set(messageId, {
        entries: [...batch.entries, ...(newer?.entries ?? [])],
        raw: newer?.raw ?? batch.raw,
      });
    });
    return ok;
  }
}
