import { Transform, type TransformCallback } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SMTPServerDataStream } from 'smtp-server';
import {
  BareLineFeedError,
  type InboundEvent,
  InboundEventSchema,
  MessageTooLargeError,
  newMessageId,
  rawObjectKey,
  SmtpError,
  SpoolFullError,
  StreamMeter,
  TemporaryFailureError,
} from '../core/index.ts';
import type { SqsEventQueue } from './event-queue.ts';
import type { MessageScreen } from './filtering/index.ts';
import type { MemoryBudget } from './memory-budget.ts';
import { PART_SIZE, uploadStream } from './raw-upload.ts';

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

// Beyond this a message's bytes are bounded by the one part buffer of its upload, not by the budget.
const BUDGETED_PER_MESSAGE = 2 * PART_SIZE;

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
 * Meters the bytes that go to S3 (the trace header first) with a {@link StreamMeter}, without
 * holding them: size and SHA-256 are over exactly what is stored. Fails the stream when the message
 * grows over the limit, or has a bare LF while those are refused.
 */
class MessageMeter extends Transform {
  readonly #source: SMTPServerDataStream;
  readonly #rejectBareLf: boolean;
  readonly #maxMessageBytes: number;
  readonly #budget: MemoryBudget;
  readonly #meter = new StreamMeter();
  #budgeted = 0;
  #settled = false;

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
    this.#meter.update(bytes);
    this.push(bytes);
  }

  // Not `size`/`length`/`byteLength`: lib-storage would read those as the total body length.
  get storedBytes(): number {
    return this.#meter.bytes;
  }

  /** The SHA-256 of everything passed through; call once, at the end. */
  digest(): string {
    return this.#meter.digest();
  }

  /** Whether any line so far ended in a bare LF. */
  get bareLf(): boolean {
    return this.#meter.bareLf;
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
    if (this.#meter.update(chunk) && this.#rejectBareLf) return new BareLineFeedError();
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
  try {
    await uploadStream(
      target.s3,
      { bucket: target.bucket, key, contentType: 'message/rfc822' },
      stage ?? meter,
    );
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
