import { createHash } from 'node:crypto';
import { BareLfScanner } from './bare-lf.ts';

/**
 * Measures a message as its chunks go by, without holding them: the byte count, the SHA-256 and
 * whether any line ends in a bare LF (RFC 5321 §2.3.8). The listener meters what it stores and
 * parse what it reads back with it, so the two agree on the same bytes; each wraps it in the stream
 * stage it needs.
 */
export class StreamMeter {
  /** Bytes counted so far. */
  bytes = 0;
  readonly #hash = createHash('sha256');
  readonly #bareLf = new BareLfScanner();

  /** Counts the next chunk; returns true when it holds the first bare LF. */
  update(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    this.#hash.update(chunk);
    return this.#bareLf.scan(chunk);
  }

  /** Whether any line so far ended in a bare LF. */
  get bareLf(): boolean {
    return this.#bareLf.found;
  }

  /** Lowercase hex SHA-256 of every chunk counted; call once, at the end. */
  digest(): string {
    return this.#hash.digest('hex');
  }
}
