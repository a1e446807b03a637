import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A pass-through that measures what flows through it: byte count, SHA-256, whether any line ends
 * in a bare LF (RFC 5321 §2.3.8), and a copy of the bytes while they stay within `keepUpTo`.
 */
export class Measure extends Transform {
  size = 0;
  bareLf = false;
  readonly #hash: Hash = createHash('sha256');
  readonly #keepUpTo: number;
  #kept: Buffer[] | undefined = [];
  #lastByte = -1;
  #sha256: string | undefined;

  constructor(options: { keepUpTo?: number } = {}) {
    super();
    this.#keepUpTo = options.keepUpTo ?? 0;
  }

  /** Lowercase hex SHA-256 of everything that passed; available once the stream has ended. */
  get sha256(): string {
    if (this.#sha256 === undefined) throw new Error('Measure: the stream has not ended');
    return this.#sha256;
  }

  /** The bytes, when they all fit within `keepUpTo`; undefined otherwise. */
  get kept(): Buffer | undefined {
    return this.#kept ? Buffer.concat(this.#kept) : undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    this.size += chunk.length;
    if (this.#kept && this.size <= this.#keepUpTo) this.#kept.push(chunk);
    else this.#kept = undefined;
    if (!this.bareLf) {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) {
        if ((at > 0 ? chunk[at - 1] : this.#lastByte) !== 13) {
          this.bareLf = true;
          break;
        }
      }
    }
    if (chunk.length > 0) this.#lastByte = chunk[chunk.length - 1]!;
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#sha256 = this.#hash.digest('hex');
    done();
  }
}
