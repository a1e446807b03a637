import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StreamMeter } from '../../core/index.ts';

// Our own trace header is at most a few hundred bytes; a longer first field is not ours.
const MAX_TRACE_HEADER_BYTES = 16 * 1024;
const RECEIVED = Buffer.from('Received:');

/**
 * Where the bytes after a leading `Received:` header field start (0 when there is none), or
 * undefined while `head` may still end inside that field.
 */
function afterTraceHeader(head: Buffer, ended: boolean): number | undefined {
  if (head.length < RECEIVED.length) return ended ? 0 : undefined;
  if (!head.subarray(0, RECEIVED.length).equals(RECEIVED)) return 0;
  // RFC 5322 §2.2.3: a field goes on while the next line starts with white space.
  for (let at = head.indexOf(10); at !== -1; at = head.indexOf(10, at + 1)) {
    const next = head[at + 1];
    if (next === undefined) break;
    if (next !== 32 && next !== 9) return at + 1;
  }
  if (head.length > MAX_TRACE_HEADER_BYTES) return 0;
  return ended ? head.length : undefined;
}

/**
 * A pass-through that measures what flows through it with a {@link StreamMeter} (byte count,
 * SHA-256, bare LF), and keeps a copy of the bytes while they stay within `keepUpTo`.
 * `contentSha256` leaves out the leading `Received:` field, the listener's trace header, which
 * differs on every delivery (our message id and time): it is the same when a sender sends the
 * same bytes again.
 */
export class Measure extends Transform {
  readonly #meter = new StreamMeter();
  readonly #keepUpTo: number;
  #kept: Buffer[] | undefined = [];
  #sha256: string | undefined;
  readonly #content: Hash = createHash('sha256');
  #head: Buffer | undefined = Buffer.alloc(0);
  #contentSha256: string | undefined;

  constructor(options: { keepUpTo?: number } = {}) {
    super();
    this.#keepUpTo = options.keepUpTo ?? 0;
  }

  /** Bytes that passed so far. */
  get size(): number {
    return this.#meter.bytes;
  }

  /** Lowercase hex SHA-256 of everything that passed; available once the stream has ended. */
  get sha256(): string {
    if (this.#sha256 === undefined) throw new Error('Measure: the stream has not ended');
    return this.#sha256;
  }

  /** Lowercase hex SHA-256 of everything after the leading `Received:` field; once the stream has ended. */
  get contentSha256(): string {
    if (this.#contentSha256 === undefined) throw new Error('Measure: the stream has not ended');
    return this.#contentSha256;
  }

  #hashContent(chunk: Buffer, ended: boolean): void {
    if (!this.#head) return void this.#content.update(chunk);
    this.#head = Buffer.concat([this.#head, chunk]);
    const start = afterTraceHeader(this.#head, ended);
    if (start === undefined) return;
    this.#content.update(this.#head.subarray(start));
    this.#head = undefined;
  }

  /** Whether any line so far ended in a bare LF. */
  get bareLf(): boolean {
    return this.#meter.bareLf;
  }

  /** The bytes, when they all fit within `keepUpTo`; undefined otherwise. */
  get kept(): Buffer | undefined {
    return this.#kept ? Buffer.concat(this.#kept) : undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#meter.update(chunk);
    this.#hashContent(chunk, false);
    if (this.#kept && this.size <= this.#keepUpTo) this.#kept.push(chunk);
    else this.#kept = undefined;
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#sha256 = this.#meter.digest();
    this.#hashContent(Buffer.alloc(0), true);
    this.#contentSha256 = this.#content.digest('hex');
    done();
  }
}
