import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { BatchSendError, QueueSendError, sendBatch } from '../core/index.ts';

/** How {@link SqsEventQueue} groups messages into `SendMessageBatch` calls. */
export interface BatchingOptions {
  /** Entries per call; SQS allows at most 10. @default 10 */
  readonly maxEntries?: number;
  /**
   * How long the first message of a batch waits for company. At 0 a batch leaves at once when
   * fewer than `maxCalls` calls are in flight, and otherwise gathers until one returns: no added
   * latency when idle, full batches under load. @default 0
   */
  readonly lingerMs?: number;
  /** SendMessageBatch calls in flight at once when `lingerMs` is 0. @default 2 */
  readonly maxCalls?: number;
  /** Body bytes per call, below the SQS request limit. @default 900 KiB */
  readonly maxBytes?: number;
}

type Pending = { body: string; resolve: () => void; reject: (error: Error) => void };

/**
 * Sends message bodies to one SQS queue, batching the sends of concurrent sessions into
 * `SendMessageBatch` calls: the AWS SDK's CPU cost per call, not SQS, bounds the listener's
 * throughput. Each `send` settles with its own entry's outcome.
 */
export class SqsEventQueue {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #maxEntries: number;
  readonly #lingerMs: number;
  readonly #maxBytes: number;
  readonly #maxCalls: number;
  #pending: Pending[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(sqs: SQSClient, queueUrl: string, options: BatchingOptions = {}) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#maxEntries = Math.min(options.maxEntries ?? 10, 10);
    this.#lingerMs = options.lingerMs ?? 0;
    this.#maxBytes = options.maxBytes ?? 900 * 1024;
    this.#maxCalls = Math.max(1, options.maxCalls ?? 2);
  }

  /** Resolves once SQS stored this body; rejects with the reason it did not. */
  send(body: string): Promise<void> {
    const bytes = Buffer.byteLength(body);
    if (this.#pending.length > 0 && this.#pendingBytes + bytes > this.#maxBytes) this.#dispatch();
    return new Promise((resolve, reject) => {
      this.#pending.push({ body, resolve, reject });
      this.#pendingBytes += bytes;
      if (this.#pending.length >= this.#maxEntries) this.#dispatch();
      else if (this.#lingerMs > 0) this.#timer ??= setTimeout(() => this.#dispatch(), this.#lingerMs);
      // setImmediate lets the sends of this turn of the event loop join the same batch.
      else if (this.#inFlight.size < this.#maxCalls) this.#immediate ??= setImmediate(() => this.#dispatch());
    });
  }

  /** Sends what is waiting and resolves when every call made so far has settled. */
  async flush(): Promise<void> {
    this.#dispatch();
    await Promise.allSettled([...this.#inFlight]);
  }

  #dispatch(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    clearImmediate(this.#immediate);
    this.#immediate = undefined;
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    this.#pendingBytes = 0;
    const call = this.#sendBatch(batch).finally(() => {
      this.#inFlight.delete(call);
      // What gathered while every call was busy leaves now.
      if (this.#lingerMs === 0 && this.#pending.length > 0) this.#dispatch();
    });
    this.#inFlight.add(call);
  }

  /** Settles each entry with its own outcome: one SQS did not take rejects, the others resolve. */
  async #sendBatch(batch: Pending[]): Promise<void> {
    try {
      await sendBatch(
        batch,
        (entry, Id) => ({ Id, MessageBody: entry.body }),
        (Entries) => this.#sqs.send(new SendMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries })),
        { what: 'inbound events', bytes: (entry) => Buffer.byteLength(entry.body) },
      );
    } catch (error) {
      const failed =
        error instanceof BatchSendError
          ? new Map(
              error.unsent.map((item) => [
                item.index,
                new QueueSendError(`SQS refused the message: ${item.reason}`),
              ]),
            )
          : undefined;
      batch.forEach((entry, index) => {
        const reason = failed ? failed.get(index) : (error as Error);
        if (reason) entry.reject(reason);
      });
    }
    // Settling twice is a no-op: this resolves the entries not rejected above.
    for (const entry of batch) entry.resolve();
  }
}
