import type { Context } from 'aws-lambda';
import { INVOCATION_MARGIN_MS } from '../core/index.ts';

/** Thrown into the records still running when the invocation is about to run out of time. */
export class OutOfTimeError extends Error {
  override name = 'OutOfTimeError';
}

/**
 * Aborts {@link INVOCATION_MARGIN_MS} before the invocation's time runs out (from the Lambda
 * context; never without one), so a handler can report the records it finished and leave only the
 * others to SQS, instead of being cut off by Lambda with every record of the batch failed.
 */
export function timeLeftSignal(context: Context | undefined): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  if (!context) return { signal: controller.signal, clear: () => {} };
  const left = context.getRemainingTimeInMillis() - INVOCATION_MARGIN_MS;
  const timer = setTimeout(
    () =>
      controller.abort(
        new OutOfTimeError(`stopped ${INVOCATION_MARGIN_MS} ms before the function's timeout`),
      ),
    Math.max(0, left),
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/** Runs `work`, or rejects with the signal's reason as soon as it aborts. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const stop = () => reject(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', stop));
  });
}

/**
 * How long the end of an invocation waits for the message log (a frozen function sends nothing);
 * a write still failing then stays queued for the next invocation, and never holds a message.
 */
export const LOG_FLUSH_MS = 2000;
