import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSEvent } from 'aws-lambda';
import { BatchSendError, createLogger, type Logger, sendBatch } from '../core/index.ts';
import { lambdaContext, sqsEventFromMessages } from './sqs-event.ts';

/**
 * A Lambda handler for SQS events, as the functions export them. It resolves with an
 * `SQSBatchResponse` or nothing; anything else counts as a failed batch, as in Lambda.
 */
export type SqsHandler = (event: SQSEvent, context: Context) => Promise<unknown>;

export interface PollerOptions {
  sqs: SQSClient;
  queueUrl: string;
  handler: SqsHandler;
  /** Name in the context and the logs. @default the queue name */
  functionName?: string;
  /** Most records per invocation; above 10 several receives fill one batch. @default 10 */
  batchSize?: number;
  /** How long to gather records before invoking with a partial batch. @default 0 */
  maxBatchingWindowMs?: number;
  /** Visibility timeout asked for on receive. @default the queue's own */
  visibilityTimeoutSeconds?: number;
  /** Function timeout: a longer invocation counts as failed, like a Lambda timeout. @default 60 */
  timeoutSeconds?: number;
  /** Batches handled in parallel (Lambda's concurrent pollers). @default 2 */
  concurrency?: number;
  /** Long-poll wait per receive; `stop()` may wait this long. @default 20 */
  waitTimeSeconds?: number;
  logger?: Logger;
}

/** Counters of a running poller. */
export interface PollerStats {
  /** Handler invocations. */
  invocations: number;
  /** Records handed to the handler. */
  received: number;
  /** Records deleted after the handler reported them done. */
  deleted: number;
  /** Records left on the queue: reported as failures, or in a failed or timed-out invocation. */
  failed: number;
  /** Invocations that threw, timed out or returned an invalid batch response. */
  invocationErrors: number;
}

export interface Poller {
  readonly stats: Readonly<PollerStats>;
  /** Stops receiving, then waits for the batches in flight to finish (their handlers included). */
  stop(): Promise<void>;
}

/**
 * Which records of a batch to delete, as Lambda decides with `ReportBatchItemFailures`: nothing or
 * an empty list deletes all, listed ids stay; a malformed list or an unknown id fails the batch.
 */
function recordsToDelete(event: SQSEvent, response: unknown): Set<string> | 'batch-failed' {
  const all = new Set(event.Records.map((record) => record.messageId));
  if (response === undefined || response === null) return all;
  if (typeof response !== 'object') return 'batch-failed';
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return all;
  if (!Array.isArray(failures)) return 'batch-failed';
  const remaining = new Set(all);
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !all.has(id)) return 'batch-failed';
    remaining.delete(id);
  }
  return remaining;
}

class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/**
 * A Lambda-style SQS event source mapping: long-polls `queueUrl`, invokes `handler` with the
 * event and context Lambda would build, and deletes the records it reports done. Records it
 * reports as failures, or every record of an invocation that throws, are left alone, so they come
 * back after their visibility timeout (or whatever visibility the handler set on them) and the
 * queue's redrive policy moves them to the DLQ after `maxReceiveCount` receives.
 */
export async function startPoller(options: PollerOptions): Promise<Poller> {
  const { sqs, queueUrl, handler } = options;
  const batchSize = options.batchSize ?? 10;
  const windowMs = options.maxBatchingWindowMs ?? 0;
  const timeoutMs = (options.timeoutSeconds ?? 60) * 1000;
  const waitTimeSeconds = options.waitTimeSeconds ?? 20;
  const functionName = options.functionName ?? queueUrl.slice(queueUrl.lastIndexOf('/') + 1);
  const logger = options.logger ?? createLogger('poller');
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
  );
  const queueArn = Attributes!.QueueArn!;
  const region = queueArn.split(':')[3]!;
  const stats: PollerStats = { invocations: 0, received: 0, deleted: 0, failed: 0, invocationErrors: 0 };
  const handlersRunning = new Set<Promise<unknown>>();
  let stopping = false;

  const receive = (max: number, wait: number) =>
    sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, max),
        WaitTimeSeconds: wait,
        AttributeNames: ['All'],
        MessageAttributeNames: ['All'],
        ...(options.visibilityTimeoutSeconds !== undefined
          ? { VisibilityTimeout: options.visibilityTimeoutSeconds }
          : {}),
      }),
    );

  async function gatherBatch(): Promise<Message[]> {
    const batch = (await receive(batchSize, waitTimeSeconds)).Messages ?? [];
    const deadline = Date.now() + windowMs;
    while (batch.length > 0 && batch.length < batchSize && !stopping) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const more = (
        await receive(batchSize - batch.length, Math.min(waitTimeSeconds, Math.ceil(left / 1000)))
      ).Messages;
      if (more?.length) batch.push(...more);
    }
    return batch;
  }

  async function invoke(event: SQSEvent): Promise<unknown> {
    const context = lambdaContext(functionName, region, timeoutMs);
    const running = Promise.resolve().then(() => handler(event, context));
    const settled = running.then(
      () => undefined,
      () => undefined,
    );
    handlersRunning.add(settled);
    void settled.then(() => handlersRunning.delete(settled));
    const timeout = new AbortController();
    try {
      return await Promise.race([
        running,
        sleep(timeoutMs, undefined, { signal: timeout.signal }).then(() => {
          throw new TimeoutError(`${functionName} timed out after ${timeoutMs} ms`);
        }),
      ]);
    } finally {
      timeout.abort();
    }
  }

  async function handleBatch(messages: Message[]): Promise<void> {
    const event = sqsEventFromMessages(messages, queueArn, region);
    stats.invocations++;
    stats.received += messages.length;
    let toDelete: Set<string> | 'batch-failed';
    try {
      toDelete = recordsToDelete(event, await invoke(event));
      if (toDelete === 'batch-failed') {
        logger.error('invalid batchItemFailures: the whole batch failed', { functionName });
      }
    } catch (error) {
      logger.error('invocation failed: the whole batch stays on the queue', { functionName, error });
      toDelete = 'batch-failed';
    }
    if (toDelete === 'batch-failed') {
      stats.invocationErrors++;
      stats.failed += messages.length;
      return;
    }
    stats.failed += messages.length - toDelete.size;
    const done = event.Records.filter((record) => toDelete.has(record.messageId));
    try {
      await sendBatch(
        done,
        (record, Id) => ({ Id, ReceiptHandle: record.receiptHandle }),
        (Entries) => sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries })),
        { what: 'deletes' },
      );
      stats.deleted += done.length;
    } catch (error) {
      if (!(error instanceof BatchSendError)) throw error;
      stats.deleted += done.length - error.unsent.length;
      for (const { index, reason } of error.unsent) {
        logger.warn('delete failed: the record will be received again', {
          functionName,
          messageId: done[index]!.messageId,
          reason,
        });
      }
    }
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      let batch: Message[];
      try {
        batch = await gatherBatch();
      } catch (error) {
        if (stopping) break;
        logger.error('receive failed, retrying in 1 s', { functionName, error });
        await sleep(1000);
        continue;
      }
      if (batch.length === 0) continue;
      try {
        await handleBatch(batch);
      } catch (error) {
        logger.error('batch bookkeeping failed', { functionName, error });
      }
    }
  }

  const loops = Array.from({ length: options.concurrency ?? 2 }, () => loop());
  return {
    stats,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(handlersRunning);
    },
  };
}
