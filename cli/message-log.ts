import { monotonicFactory } from 'ulid';
import type { JobRef, LogEntry } from '../core/control/index.ts';
import type { Connection } from './connection.ts';

const nextEventId = monotonicFactory();

/**
 * What a command put back on a queue, for one message (see deriveStatus for how the status reads
 * it): `retried` with the delivery jobs sent again as they were, or none for an inbound entry sent
 * back to parse (its `parsed` event lists what it queues); `replayed` for a parse the CLI ran
 * itself, which logs no `parsed` event (its jobs show as they are tried).
 */
export type Requeued =
  | { readonly type: 'retried'; readonly route: string | null; readonly jobs: readonly JobRef[] }
  | { readonly type: 'replayed'; readonly route: string | null };

/**
 * Records in the message log, by `cli`, what a command re-queued (the API records the key id that
 * asked instead), at `queuedAt`: a time taken before the first message was queued, so the event
 * sorts before anything the pipeline logs of it. Never fails the command, whose mail is queued
 * already: a log that cannot be written is said on stderr.
 */
export async function logRequeued(
  connection: Connection,
  requeued: readonly { readonly messageId: string; readonly event: Requeued }[],
  queuedAt: Date,
): Promise<void> {
  if (requeued.length === 0) return;
  const at = queuedAt.toISOString();
  const byMessage = new Map<string, LogEntry[]>();
  for (const { messageId, event } of requeued) {
    const entry: LogEntry = {
      eventId: nextEventId(),
      event:
        event.type === 'retried'
          ? { at, by: 'cli', type: 'retried', route: event.route, jobs: [...event.jobs] }
          : { at, by: 'cli', type: 'replayed', route: event.route },
    };
    byMessage.set(messageId, [...(byMessage.get(messageId) ?? []), entry]);
  }
  const unlogged = (why: string) =>
    console.error(`mailbridge: not recorded in the message log of ${byMessage.size} message(s): ${why}`);
  try {
    const log = await connection.messageLog();
    if (!log) {
      return unlogged(
        connection.local
          ? 'no running `mailbridge dev` holds its store'
          : 'no control table (--control-table, or --stack with the output ControlTableName)',
      );
    }
    const results = await Promise.allSettled(
      [...byMessage].map(([messageId, entries]) => log.appendEvents(messageId, entries)),
    );
    const failed = results.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));
    if (failed.length > 0) {
      console.error(
        `mailbridge: ${failed.length} of ${byMessage.size} message(s) not recorded in the message log: ${(failed[0] as Error).message}`,
      );
    }
  } catch (error) {
    unlogged((error as Error).message);
  }
}
