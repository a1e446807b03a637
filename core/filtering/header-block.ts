import addressparser from 'nodemailer/lib/addressparser/index.js';

/** What DMARC needs from the header block (RFC 7489 §3.1: the RFC5322.From domain). */
export interface HeaderFacts {
  /** Every mailbox address of every From field, as mailauth's `dmarc()` takes them. */
  readonly from: readonly string[];
  /** How many From fields there were (RFC 5322 §3.6 allows exactly one). */
  readonly fromFields: number;
}

// The end of the header block: the first empty line, CRLF or bare LF (RFC 5322 §2.1).
const END = /\r?\n\r?\n/;

/**
 * Collects the header block of a message as it streams by, up to `maxBytes` (the rest of the
 * message is never held): `push` each chunk until it returns the facts, or `undefined` forever
 * once the block is over the cap or the message has no body separator.
 */
export class HeaderBlock {
  readonly #maxBytes: number;
  #held = Buffer.alloc(0);
  #done = false;

  constructor(maxBytes = 128 * 1024) {
    this.#maxBytes = maxBytes;
  }

  /** Takes the next chunk; returns the facts once the block is complete (exactly once). */
  push(chunk: Buffer): HeaderFacts | undefined {
    if (this.#done) return undefined;
    // The separator may have begun in the last 3 bytes held before this chunk.
    const start = Math.max(0, this.#held.length - 3);
    this.#held = Buffer.concat([this.#held, chunk]);
    const end = END.exec(this.#held.toString('latin1', start));
    if (end) {
      const block = this.#held.toString('latin1', 0, start + end.index);
      this.#finish();
      return headerFacts(block);
    }
    if (this.#held.length > this.#maxBytes) this.#finish();
    return undefined;
  }

  #finish(): void {
    this.#done = true;
    this.#held = Buffer.alloc(0);
  }
}

/** The From facts of a complete header block (folded lines joined, RFC 5322 §2.2.3). */
export function headerFacts(block: string): HeaderFacts {
  const fields = block.split(/\r?\n(?![ \t])/);
  const from: string[] = [];
  let fromFields = 0;
  for (const field of fields) {
    const colon = field.indexOf(':');
    if (colon < 0 || field.slice(0, colon).trim().toLowerCase() !== 'from') continue;
    fromFields += 1;
    // Header bytes are latin1 here; an SMTPUTF8 address is UTF-8 (RFC 6532).
    const value = Buffer.from(field.slice(colon + 1), 'latin1')
      .toString('utf8')
      .replace(/\r?\n/g, '');
    for (const entry of addressparser(value.trim(), { flatten: true })) {
      if (entry.address) from.push(entry.address);
    }
  }
  return { from, fromFields };
}
