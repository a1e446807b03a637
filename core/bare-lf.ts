/**
 * Finds a line that ends in a bare LF (RFC 5321 §2.3.8) across the chunks of a stream, carrying
 * the last byte over so a CRLF split between two chunks is not mistaken for one.
 */
export class BareLfScanner {
  /** Whether a bare LF has been seen in any chunk so far. */
  found = false;
  #lastByte = -1;

  /** Scans the next chunk; returns true when this chunk holds the first bare LF. */
  scan(chunk: Buffer): boolean {
    const before = this.found;
    if (!before) {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) {
        if ((at > 0 ? chunk[at - 1] : this.#lastByte) !== 13) {
          this.found = true;
          break;
        }
      }
    }
    if (chunk.length > 0) this.#lastByte = chunk[chunk.length - 1]!;
    return this.found && !before;
  }
}
