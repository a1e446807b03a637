import { setTimeout as sleep } from 'node:timers/promises';
import { QueueSendError } from './errors.ts';
import { SQS_LIMITS } from './events.ts';

/** One entry of an SQS batch call: SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch alike. */
export interface BatchEntry {
  readonly Id: string;
}

/** An entry SQS did not act on (its `BatchResultErrorEntry`). */
export interface BatchEntryFailure {
  readonly Id?: string | undefined;
  /** True when the caller is at fault (a bad receipt handle, a body SQS refuses): asking again fails again. */
  readonly SenderFault?: boolean | undefined;
  readonly Code?: string | undefined;
  readonly Message?: string | undefined;
}

/** What every SQS batch call answers: 200 with the entries done and those not. */
export interface BatchAnswer {
  readonly Successful?: readonly { readonly Id?: string | undefined }[] | undefined;
  readonly Failed?: readonly BatchEntryFailure[] | undefined;
}

/** The SQS port: one batch call over `entries` (at most 10), made by the caller's SDK client. */
export type BatchCall<E extends BatchEntry> = (entries: E[]) => Promise<BatchAnswer>;

/** One item of a batch that SQS did not take, by its position in the items given. */
export interface UnsentItem {
  readonly index: number;
  readonly reason: string;
}

/**
 * Items of a batch SQS did not take, after retrying those it could; `unsent` names each. The items
 * not listed were taken.
 */
export class BatchSendError extends QueueSendError {
  override name = 'BatchSendError';
  readonly unsent: readonly UnsentItem[];
  constructor(what: string, total: number, unsent: readonly UnsentItem[]) {
    const reasons = [...new Set(unsent.map((item) => item.reason))].join('; ');
    super(`${what}: SQS did not take ${unsent.length} of ${total}: ${reasons}`);
    this.unsent = unsent;
  }
}

export interface SendBatchOptions<T> {
  /** What the items are, for the error: "delivery jobs", "deletes". */
  readonly what: string;
  /**
   * The bytes an item adds to the request toward {@link SQS_LIMITS}.messageBytes (a message body);
   * SQS refuses a whole SendMessageBatch over it with BatchRequestTooLong. @default 0
   */
  readonly bytes?: (item: T) => number;
  /**
   * Waits before each new round for the entries SQS failed on its side or did not report on; the
   * calls themselves are retried by the SDK. @default [100, 400, 1600]
   */
  readonly retryDelaysMs?: readonly number[];
}

const RETRY_DELAYS_MS = [100, 400, 1600];

/** Items in calls of at most {@link SQS_LIMITS}.batchEntries entries and `messageBytes` bytes. */
function chunks<T>(items: readonly { item: T; index: number }[], bytes: (item: T) => number) {
  const calls: { item: T; index: number }[][] = [];
  let call: { item: T; index: number }[] = [];
  let size = 0;
  for (const entry of items) {
    const itemBytes = bytes(entry.item);
    if (
      call.length === SQS_LIMITS.batchEntries ||
      (call.length > 0 && size + itemBytes > SQS_LIMITS.messageBytes)
    ) {
      calls.push(call);
      call = [];
      size = 0;
    }
    call.push(entry);
    size += itemBytes;
  }
  if (call.length > 0) calls.push(call);
  return calls;
}

/**
 * Sends `items` through SQS batch calls, as many as the limits need: at most 10 entries each and,
 * with `bytes`, at most {@link SQS_LIMITS}.messageBytes of bodies. An entry SQS answers in `Failed`
 * on its own side (`SenderFault` false, e.g. InternalError) or does not report on is sent again,
 * after each of `retryDelaysMs`; one failed by the sender's fault is not. Resolves once every item
 * was taken; else throws a {@link BatchSendError} naming the items not taken (the others were).
 * A call that fails as a whole throws its error: nothing is known of its entries.
 */
export async function sendBatch<T, E extends BatchEntry>(
  items: readonly T[],
  entry: (item: T, id: string) => E,
  call: BatchCall<E>,
  options: SendBatchOptions<T>,
): Promise<void> {
  const bytes = options.bytes ?? (() => 0);
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  let pending = items.map((item, index) => ({ item, index }));
  const unsent: UnsentItem[] = [];
  for (let round = 0; pending.length > 0; round++) {
    if (round > 0) await sleep(delays[round - 1]);
    const again: typeof pending = [];
    for (const batch of chunks(pending, bytes)) {
      const answer = await call(batch.map(({ item }, at) => entry(item, String(at))));
      const failures = new Map((answer.Failed ?? []).map((failure) => [failure.Id, failure]));
      const done = new Set((answer.Successful ?? []).map((success) => success.Id));
      batch.forEach((pendingItem, at) => {
        const id = String(at);
        if (done.has(id)) return;
        const failure = failures.get(id);
        const reason = failure
          ? [failure.Code ?? 'unknown', failure.Message].filter(Boolean).join(': ')
          : 'not reported';
        if (failure?.SenderFault || round === delays.length)
          unsent.push({ index: pendingItem.index, reason });
        else again.push(pendingItem);
      });
    }
    pending = again;
  }
  if (unsent.length > 0) {
    throw new BatchSendError(
      options.what,
      items.length,
      unsent.sort((a, b) => a.index - b.index),
    );
  }
}
