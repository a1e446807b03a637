import { appendFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';

const common = { at: z.string(), messageId: z.string() };
const delivery = {
  ...common,
  routeId: z.string().nullable(),
  endpoint: z.string().nullable(),
  webhookId: z.string().nullable(),
  /** Tries made so far. */
  tries: z.number().int().nullable(),
  /** The endpoint's HTTP status, when it answered. */
  status: z.number().int().nullable(),
  error: z.string().nullable(),
};

/**
 * What happened to one message in the local runtime: accepted by the listener, then for each
 * (route, endpoint) delivered, a try failed and a retry scheduled, or failed into the delivery DLQ
 * (`reason`: `permanent`, `exhausted`, `gone`, `parked`…). The runtime appends one JSON line per
 * event to its data folder (`events.jsonl`), which `mailbridge tail` reads when no control plane
 * API answers; the message log itself is the control plane's.
 */
export const MessageEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('accepted'),
    ...common,
    size: z.number().int().nullable(),
    recipients: z.number().int().nullable(),
    remoteAddress: z.string().nullable(),
  }),
  z.object({ kind: z.literal('delivered'), ...delivery }),
  z.object({ kind: z.literal('retry'), ...delivery, delaySeconds: z.number() }),
  z.object({ kind: z.literal('failed'), ...delivery, reason: z.string() }),
]);
export type MessageEvent = z.infer<typeof MessageEventSchema>;

/** Where the runtime with this data folder records its message events. */
export function messageEventsFile(dataDir: string): string {
  return join(dataDir, 'events.jsonl');
}

/** Appends one event (synchronously: it is called from a logger, which cannot wait). */
export function appendMessageEvent(file: string, event: MessageEvent): void {
  appendFileSync(file, `${JSON.stringify(event)}\n`);
}

/** Reads the events appended since the previous call. */
export interface MessageEventReader {
  read(): Promise<MessageEvent[]>;
  close(): Promise<void>;
}

/**
 * Follows the events of `file` from its end (`from: 'end'`, what a tail wants) or from its start.
 * A line that is not an event (a file cut short by a crash) is skipped.
 */
export async function followMessageEvents(
  file: string,
  options: { from: 'start' | 'end' },
): Promise<MessageEventReader> {
  const handle = await open(file, 'a+');
  let position = options.from === 'end' ? (await handle.stat()).size : 0;
  let partial = '';
  return {
    async read() {
      const { size } = await handle.stat();
      // The file was removed with its data folder and started again.
      if (size < position) {
        position = 0;
        partial = '';
      }
      if (size === position) return [];
      const buffer = Buffer.alloc(size - position);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      position += bytesRead;
      const lines = (partial + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      return lines.flatMap((line) => {
        try {
          const event = MessageEventSchema.safeParse(JSON.parse(line));
          return event.success ? [event.data] : [];
        } catch {
          return [];
        }
      });
    },
    close: () => handle.close(),
  };
}
