import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { SMTPServerDataStream } from 'smtp-server';
import {
  BareLfScanner,
  BareLineFeedError,
  type InboundEvent,
  InboundEventSchema,
  MessageTooLargeError,
  newMessageId,
  rawObjectKey,
  SmtpError,
  SpoolFullError,
  TemporaryFailureError,
} from '../core/index.ts';
import type { SqsEventQueue } from './event-queue.ts';
import type { MessageScreen } from './filtering/index.ts';

/** The envelope of one message, copied from the session before any await (smtp-server resets it). */
export type Envelope = InboundEvent['envelope'] & {
  /** `SMTP`/`ESMTP` plus `S` (TLS) and `A` (authenticated), RFC 3848. */
  readonly protocol: string;
};

/** Where accepted messages go. */
export interface SpoolTarget {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly events: SqsEventQueue;
  /** Name in the `by` clause of the trace header. */
  readonly hostname: string;
  readonly maxMessageBytes: number;
  readonly rejectBareLf: boolean;
  /** Bounds the bytes all messages in progress hold in memory together. */
  readonly budget: MemoryBudget;
}

/** A durably accepted message: stored in S3 and announced on the inbound queue. */
export interface SpooledMessage {
  readonly id: string;
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly bareLf: boolean;
  /** What filtering decided before the `250`, as queued in the InboundEvent. */
  readonly filtering?: InboundEvent['filtering'];
}

// Multipart parts are 5 MiB, the S3 minimum. One in flight: lib-storage then holds one part (and
// briefly its concatenation) per message, and stops reading while it uploads, which pauses the sender.
const PART_SIZE = 5 * 1024 * 1024;
const QUEUE_SIZE = 1;
// Beyond this a message's bytes are bounded by lib-storage's one part in flight, not by the budget.
const BUDGETED_PER_MESSAGE = 2 * PART_SIZE;

/**
 * Bytes held in memory by all messages being spooled, bounded by backpressure: a message that
 * would go over the capacity waits (its sender is paused through TCP) until others finish. The
 * oldest holder always proceeds, so the holders can never all wait on each other: the bytes held
 * never exceed the capacity plus what one message may hold. A message still without room after
 * `maxWaitMs` takes it from messages younger than itself, which are refused; with none younger it
 * is refused itself, rather than let through. So senders that stall mid-DATA can neither freeze
 * everyone else nor grow memory past the bound, and of many slow senders at once the oldest finish
 * instead of all of them failing together.
 */
export class MemoryBudget {
  readonly #capacity: number;
  readonly #maxWaitMs: number;
  #used = 0;
  // Insertion order: the first key is the oldest holder.
  readonly #holders = new Map<object, { bytes: number; preempt: () => void }>();
  readonly #preempted = new WeakSet<object>();
  readonly #waiting = new Set<() => void>();

  constructor(capacity: number, maxWaitMs: number) {
    this.#capacity = capacity;
    this.#maxWaitMs = maxWaitMs;
  }

  /**
   * Takes `bytes` for `owner`; resolves true at once while they fit or once room is made, false
   * (nothing taken) when the owner was preempted or no room could be made. `preempt` is called
   * (once) when an older message takes the owner's room: the owner must then give up its message,
   * whose bytes no longer count.
   */
  async take(owner: object, bytes: number, preempt: () => void): Promise<boolean> {
    const deadline = Date.now() + this.#maxWaitMs;
    while (!this.#preempted.has(owner) && !this.#fits(owner, bytes)) {
      const left = deadline - Date.now();
      if (left <= 0) {
        if (this.#preemptYounger(owner, bytes)) break;
        return false;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiting.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiting.add(wake);
      });
    }
    if (this.#preempted.has(owner)) return false;
    this.#used += bytes;
    const held = this.#holders.get(owner);
    if (held) held.bytes += bytes;
    else this.#holders.set(owner, { bytes, preempt });
    return true;
  }

  /** Gives back everything `owner` holds and wakes the waiters. */
  release(owner: object): void {
    const held = this.#holders.get(owner);
    if (held === undefined) return;
    this.#holders.delete(owner);
    this.#used -= held.bytes;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const wake of waiting) wake();
  }

  #fits(owner: object, bytes: number): boolean {
    if (this.#used + bytes <= this.#capacity) return true;
    const oldest = this.#holders.keys().next();
    return oldest.done === true || oldest.value === owner;
  }

  /** Preempts holders younger than `owner`, youngest first, until `bytes` fit; whether they do. */
  #preemptYounger(owner: object, bytes: number): boolean {
    const holders = [...this.#holders.keys()];
    const age = holders.indexOf(owner);
    // A message holding nothing yet is younger than every holder: it takes no one's room.
    if (age === -1) return false;
    for (let i = holders.length - 1; i > age && this.#used + bytes > this.#capacity; i--) {
      const younger = holders[i]!;
      this.#preempted.add(younger);
      const { preempt } = this.#holders.get(younger)!;
      this.release(younger);
      preempt();
    }
    return this.#used + bytes <= this.#capacity;
  }
}

// Header text must be printable ASCII; the HELO argument comes from the client.
const printable = (text: string) => text.replace(/[^\x21-\x7e]/g, '?');

/**
 * The `Received:` trace header (RFC 5321 §4.4) for one message: `from` the HELO name with the
 * client's address, `by` us, `with` the RFC 3848 protocol, our message `id`, `for` the recipient
 * when there is exactly one, and the date. Folded lines, CRLF-terminated.
 */
function receivedHeader(envelope: Envelope, hostname: string, id: string, date: Date): string {
  const lines = [`Received: from ${printable(envelope.helo) || 'unknown'} ([${envelope.remoteAddress}])`];
  if (envelope.tls) lines.push(`(using ${envelope.tls.protocol} with cipher ${envelope.tls.cipher})`);
  lines.push(`by ${printable(hostname)} (mailbridge) with ${envelope.protocol} id ${id}`);
  const only = envelope.rcptTo.length === 1 ? envelope.rcptTo[0] : undefined;
  // ECMA-262 fixes toUTCString as `Www, DD Mmm YYYY HH:mm:ss GMT`: RFC 5322 §3.3 but for the zone.
  const stamp = date.toUTCString().replace(/GMT$/, '+0000');
  lines.push(`${only ? `for <${printable(only)}>` : ''}; ${stamp}`.trimStart());
  return `${lines.join('\r\n\t')}\r\n`;
}

/**
 * Counts, hashes and checks the bytes that go to S3 (the trace header first), without holding
 * them: size and SHA-256 are over exactly what is stored. Fails the stream when the message
 * grows over the limit, or has a bare LF while those are refused.
 */
class MessageMeter extends Transform {
  readonly #source: SMTPServerDataStream;
  readonly #rejectBareLf: boolean;
  readonly #maxMessageBytes: number;
  readonly #budget: MemoryBudget;
  readonly #hash: Hash = createHash('sha256');
  #budgeted = 0;
  #settled = false;
  readonly #bareLf = new BareLfScanner();
  // Not `size`/`length`/`byteLength`: lib-storage would read those as the total body length.
  storedBytes = 0;

  constructor(
    source: SMTPServerDataStream,
    header: string,
    options: { rejectBareLf: boolean; max: number; budget: MemoryBudget },
  ) {
    super();
    this.#source = source;
    this.#budget = options.budget;
    this.#rejectBareLf = options.rejectBareLf;
    this.#maxMessageBytes = options.max;
    const bytes = Buffer.from(header, 'latin1');
    this.#count(bytes);
    this.push(bytes);
  }

  /** The SHA-256 of everything passed through; call once, at the end. */
  digest(): string {
    return this.#hash.digest('hex');
  }

  #count(chunk: Buffer): void {
    this.storedBytes += chunk.length;
    this.#hash.update(chunk);
  }

  /** Whether any line so far ended in a bare LF. */
  get bareLf(): boolean {
    return this.#bareLf.found;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const refusal = this.#refusal(chunk);
    const budgeted = Math.min(chunk.length, BUDGETED_PER_MESSAGE - this.#budgeted);
    if (refusal || this.#settled || budgeted <= 0) {
      callback(refusal, chunk);
      return;
    }
    this.#budgeted += budgeted;
    const preempt = () => this.destroy(new SpoolFullError());
    void this.#budget.take(this, budgeted, preempt).then((granted) => {
      if (this.#settled) this.#budget.release(this);
      callback(granted ? null : new SpoolFullError(), chunk);
    });
  }

  /** Gives back this message's share of the memory budget; later bytes are no longer counted. */
  settle(): void {
    this.#settled = true;
    this.#budget.release(this);
  }

  #refusal(chunk: Buffer): SmtpError | null {
    if (this.#source.sizeExceeded) return new MessageTooLargeError(this.#maxMessageBytes);
    // RFC 5321 §2.3.8; refusing them closes the door on SMTP smuggling towards stricter MTAs.
    if (this.#bareLf.scan(chunk) && this.#rejectBareLf) return new BareLineFeedError();
    this.#count(chunk);
    return null;
  }

  override _flush(callback: TransformCallback): void {
    callback(this.#source.sizeExceeded ? new MessageTooLargeError(this.#maxMessageBytes) : null);
  }
}

/**
 * Streams one DATA body to `raw/YYYY/MM/DD/<id>.eml` behind a `Received:` header, then queues
 * its {@link InboundEvent}. Resolves only when both are durable; rejects otherwise with the
 * {@link SmtpError} to answer (`451 4.3.0`, reason `s3_failure` or `sqs_failure`, for storage
 * failures, and `451 4.3.1` when the memory budget had no room in time, so the sender retries).
 * With a `screen`, the bytes also stream to the content scanners, and a message every route refuses
 * is answered with that refusal, never stored. Whatever goes wrong (client gone, too large, no
 * room, S3 down, refused) the upload is aborted: no object,
 * no open multipart upload, and the source stream is always read to its end so smtp-server can
 * answer.
 */
export async function spoolMessage(
  source: SMTPServerDataStream,
  envelope: Envelope,
  target: SpoolTarget,
  screen?: MessageScreen,
): Promise<SpooledMessage> {
  const receivedAt = new Date();
  const id = newMessageId(receivedAt.getTime());
  const key = rawObjectKey(id, receivedAt);
  const meter = new MessageMeter(source, receivedHeader(envelope, target.hostname, id, receivedAt), {
    rejectBareLf: target.rejectBareLf,
    max: target.maxMessageBytes,
    budget: target.budget,
  });
  let clientGone: Error | undefined;
  source.on('error', (error) => {
    clientGone = error;
    meter.destroy(error);
  });
  meter.on('error', () => {
    // Keep reading (and dropping) the rest, or smtp-server would never reach the end of DATA.
    source.unpipe(meter);
    source.resume();
  });
  source.pipe(meter);
  // The screening stage ends the body only once the verdicts allow it to be stored.
  const stage = screen?.stage;
  if (stage) {
    meter.once('error', (error) => stage.destroy(error));
    meter.pipe(stage);
  }
  const upload = new Upload({
    client: target.s3,
    params: { Bucket: target.bucket, Key: key, Body: stage ?? meter, ContentType: 'message/rfc822' },
    partSize: PART_SIZE,
    queueSize: QUEUE_SIZE,
  });
  try {
    await upload.done();
  } catch (error) {
    meter.settle();
    stage?.destroy();
    const refused = meter.errored ?? stage?.errored;
    if (refused instanceof SmtpError) throw refused;
    if (clientGone)
      throw new TemporaryFailureError('Connection lost', 'client_aborted', { cause: clientGone });
    throw new TemporaryFailureError('Temporary storage failure, try again later', 's3_failure', {
      cause: error,
    });
  }
  meter.settle();
  const bareLf = meter.bareLf;
  const event = InboundEventSchema.parse({
    version: 1,
    id,
    receivedAt: receivedAt.toISOString(),
    raw: { bucket: target.bucket, key, size: meter.storedBytes, sha256: meter.digest() },
    envelope: {
      mailFrom: envelope.mailFrom,
      rcptTo: envelope.rcptTo,
      helo: envelope.helo,
      remoteAddress: envelope.remoteAddress,
      remotePort: envelope.remotePort,
      localPort: envelope.localPort,
      tls: envelope.tls,
      authUser: envelope.authUser,
    },
    ...(bareLf ? { bareLf } : {}),
    ...(screen ? { filtering: await screen.facts() } : {}),
  } satisfies InboundEvent);
  try {
    await target.events.send(JSON.stringify(event));
  } catch (error) {
    // The object stays: had SQS stored the event after all, deleting it would lose the message.
    // The bucket's lifecycle rule removes orphans.
    throw new TemporaryFailureError('Temporary queueing failure, try again later', 'sqs_failure', {
      cause: error,
    });
  }
  return {
    id,
    key,
    size: event.raw.size,
    sha256: event.raw.sha256,
    bareLf,
    ...(event.filtering ? { filtering: event.filtering } : {}),
  };
}
