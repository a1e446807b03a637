import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { WebhookUnpacked } from '../../core/index.ts';
import { readTnef, type UnpackedContainer, type UnpackedFile } from './tnef.ts';

/** Container attachments mailbridge opens. */
export type ContainerFormat = 'tnef' | 'msg';

/** Whether an attachment is a winmail.dat (TNEF) or an Outlook item (.msg), by type or name. */
export function containerFormat(attachment: {
  readonly filename: string | null;
  readonly contentType: string;
}): ContainerFormat | null {
  const type = attachment.contentType.toLowerCase();
  const name = (attachment.filename ?? '').toLowerCase();
  if (type === 'application/ms-tnef' || type === 'application/vnd.ms-tnef' || /^win(mail)?\.dat$/.test(name))
    return 'tnef';
  if (type === 'application/vnd.ms-outlook' || name.endsWith('.msg')) return 'msg';
  return null;
}

/** Bounds of {@link readOutlookMsgBounded}. */
export interface ContainerBounds {
  /** Wall-clock time for one container. @default 5000 */
  readonly timeoutMs?: number;
  /** Heap of the worker that reads it, MB. @default 128 */
  readonly maxHeapMb?: number;
  /** Files taken from one container. @default 256 */
  readonly maxFiles?: number;
}

// Next to this module when run from source; next to the bundle (as .mjs) in the function package.
const WORKER_FILE = ['unpack-worker.ts', 'unpack-worker.mjs']
  .map((name) => new URL(name, import.meta.url))
  .find((url) => existsSync(url));

/**
 * Reads an Outlook item in a worker thread with its own heap limit and a deadline, so a hostile
 * file (a sector chain that loops, a length that claims gigabytes) ends in an error, never in a
 * stuck or out-of-memory function. Rejects with the reason. (TNEF needs no worker: its reader
 * checks every length against the bytes left, so it costs at most one pass and its input's size.)
 */
export function readOutlookMsgBounded(
  bytes: Buffer,
  bounds: ContainerBounds = {},
): Promise<UnpackedContainer> {
  const timeoutMs = bounds.timeoutMs ?? 5000;
  if (!WORKER_FILE)
    return Promise.reject(new Error('the unpack worker is not installed beside the function'));
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_FILE, {
      workerData: { bytes, maxFiles: bounds.maxFiles ?? 256 },
      resourceLimits: { maxOldGenerationSizeMb: bounds.maxHeapMb ?? 128, maxYoungGenerationSizeMb: 16 },
      stdout: true,
      stderr: true,
    });
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`reading the .msg attachment took over ${timeoutMs} ms`));
    }, timeoutMs);
    const settle = (action: () => void) => {
      clearTimeout(timer);
      action();
      void worker.terminate();
    };
    worker.once(
      'message',
      (answer: { ok: true; value: UnpackedContainer } | { ok: false; message: string }) =>
        settle(() => {
          if (!answer.ok) return reject(new Error(answer.message));
          // Structured clone turns Buffers into Uint8Arrays.
          const files = answer.value.files.map((file) => ({ ...file, content: Buffer.from(file.content) }));
          resolve({ ...answer.value, files });
        }),
    );
    worker.once('error', (error) =>
      settle(() =>
        reject(
          (error as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new Error('reading the .msg attachment needed more than its memory bound')
            : error,
        ),
      ),
    );
    worker.once('exit', (code) => settle(() => reject(new Error(`the unpack worker exited with ${code}`))));
  });
}

/** The attachment fields that describe a container and what came out of it. */
export interface UnpackedFields {
  readonly unpacked?: WebhookUnpacked;
  readonly containedIn?: number;
}

/** A stored attachment as the unpacking step needs it. */
export interface ContainerCandidate {
  readonly filename: string | null;
  readonly contentType: string;
  readonly size: number;
}

/** The ports of {@link unpackContainers}. */
export interface UnpackPorts<T> {
  /** The bytes of a stored attachment. */
  read(attachment: T): Promise<Buffer>;
  /** Stores one unpacked file as attachment number `index` of the message. */
  store(file: UnpackedFile, index: number): Promise<T>;
}

/**
 * Opens every winmail.dat and .msg attachment and appends the files inside as attachments of
 * their own (`containedIn` = the container's index); the container is kept, with `unpacked`
 * saying what it held. A container that cannot be read stays as it is, with a warning.
 */
export async function unpackContainers<T extends ContainerCandidate>(
  attachments: readonly T[],
  ports: UnpackPorts<T>,
  bounds: ContainerBounds & { readonly maxContainerBytes?: number } = {},
): Promise<{ attachments: (T & UnpackedFields)[]; warnings: string[] }> {
  const maxContainerBytes = bounds.maxContainerBytes ?? 25 * 1024 * 1024;
  const result: (T & UnpackedFields)[] = [...attachments];
  const warnings: string[] = [];
  for (const [index, attachment] of attachments.entries()) {
    const format = containerFormat(attachment);
    if (!format) continue;
    const label = attachment.filename ?? `attachment ${index}`;
    if (attachment.size > maxContainerBytes) {
      warnings.push(`unpack_skipped: ${label} is larger than ${maxContainerBytes} bytes`);
      continue;
    }
    let container: UnpackedContainer;
    try {
      const bytes = await ports.read(attachment);
      container = format === 'tnef' ? readTnef(bytes, bounds) : await readOutlookMsgBounded(bytes, bounds);
    } catch (error) {
      warnings.push(`unpack_failed: ${label}: ${(error as Error).message}`);
      continue;
    }
    for (const warning of container.warnings) warnings.push(`${warning} (${label})`);
    for (const file of container.files) {
      const stored = await ports.store(file, result.length);
      result.push({ ...stored, containedIn: index });
    }
    result[index] = {
      ...attachment,
      unpacked: {
        format,
        subject: container.subject,
        from: container.from,
        text: container.text,
        attachments: container.files.length,
      },
    };
  }
  return { attachments: result, warnings };
}
