import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** One webhook the dev inbox received, as `GET /api/webhooks` returns it (docs/architecture.md, "The local runtime"). */
export interface InboxEntry {
  readonly receivedAt: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The request body, byte for byte, as a string. */
  readonly body: string;
  /** Whether a Standard Webhooks signature verified with one of the inbox's secrets. */
  readonly signatureValid: boolean;
}

/** An entry with its sequence number (1, 2, … since the inbox was first started). */
export interface StoredEntry {
  readonly seq: number;
  readonly entry: InboxEntry;
  /** The body parsed once; undefined when it is not JSON. */
  readonly payload: unknown;
}

const FILE = 'webhooks.jsonl';

function parsePayload(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/**
 * The inbox's entries, newest last, kept in memory and, with a folder, appended to a JSON Lines
 * file there so they survive a restart. The file is rewritten (to a temporary name, then renamed)
 * when it holds twice as many lines as are kept, and emptied by a clear.
 */
export class InboxStore {
  readonly #entries: StoredEntry[] = [];
  readonly #maxEntries: number;
  readonly #folder: string | undefined;
  #file: WriteStream | undefined;
  #lines = 0;
  #lastSeq = 0;

  private constructor(maxEntries: number, folder: string | undefined) {
    this.#maxEntries = maxEntries;
    this.#folder = folder;
  }

  /** Opens the store, reading back what an earlier run kept in `folder`. */
  static async open(options: { maxEntries: number; folder?: string }): Promise<InboxStore> {
    const store = new InboxStore(options.maxEntries, options.folder);
    if (options.folder) {
      await mkdir(options.folder, { recursive: true });
      await store.#load(join(options.folder, FILE));
      store.#file = createWriteStream(join(options.folder, FILE), { flags: 'a' });
    }
    return store;
  }

  async #load(path: string): Promise<void> {
    if (!(await stat(path).catch(() => undefined))) return;
    for await (const line of createInterface({
      input: createReadStream(path, 'utf8'),
      crlfDelay: Infinity,
    })) {
      if (line.trim() === '') continue;
      // Only a line cut short by a crash can be broken: it is skipped.
      let record: { seq: number; entry?: InboxEntry };
      try {
        record = JSON.parse(line);
      } catch {
        continue;
      }
      this.#lines++;
      // A clear leaves its number behind, so numbering goes on after a restart.
      if (!record.entry) {
        this.#lastSeq = Math.max(this.#lastSeq, record.seq);
        continue;
      }
      this.#keep({ seq: record.seq, entry: record.entry, payload: parsePayload(record.entry.body) });
    }
  }

  #keep(stored: StoredEntry): void {
    this.#entries.push(stored);
    this.#lastSeq = Math.max(this.#lastSeq, stored.seq);
    if (this.#entries.length > this.#maxEntries)
      this.#entries.splice(0, this.#entries.length - this.#maxEntries);
  }

  /** Entries kept, oldest first. */
  get entries(): readonly StoredEntry[] {
    return this.#entries;
  }

  /** Webhooks received since the store was created, dropped and cleared ones included. */
  get received(): number {
    return this.#lastSeq;
  }

  get(seq: number): StoredEntry | undefined {
    return this.#entries.find((stored) => stored.seq === seq);
  }

  /** Keeps a new entry; resolves once it is on disk (with a folder), so a 2xx means stored. */
  async add(entry: InboxEntry): Promise<StoredEntry> {
    const stored: StoredEntry = { seq: this.#lastSeq + 1, entry, payload: parsePayload(entry.body) };
    this.#keep(stored);
    if (this.#file) {
      const line = `${JSON.stringify({ seq: stored.seq, entry })}\n`;
      await new Promise<void>((resolve, reject) =>
        this.#file!.write(line, (error) => (error ? reject(error) : resolve())),
      );
      this.#lines++;
      if (this.#lines > 2 * this.#maxEntries) await this.#compact();
    }
    return stored;
  }

  async #compact(): Promise<void> {
    const folder = this.#folder!;
    const temporary = join(folder, `${FILE}.tmp`);
    await writeFile(
      temporary,
      this.#entries.map(({ seq, entry }) => `${JSON.stringify({ seq, entry })}\n`).join(''),
    );
    await this.#closeFile();
    await rename(temporary, join(folder, FILE));
    this.#file = createWriteStream(join(folder, FILE), { flags: 'a' });
    this.#lines = this.#entries.length;
  }

  /**
   * Forgets every entry, on disk too. Numbering goes on (followers such as `mailbridge tail` ask for
   * the entries after the last number they saw).
   */
  async clear(): Promise<void> {
    this.#entries.length = 0;
    if (!this.#folder) return;
    await this.#closeFile();
    await writeFile(join(this.#folder, FILE), `${JSON.stringify({ seq: this.#lastSeq })}\n`);
    this.#file = createWriteStream(join(this.#folder, FILE), { flags: 'a' });
    this.#lines = 1;
  }

  async #closeFile(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    if (file) await new Promise<void>((resolve) => file.end(resolve));
  }

  close(): Promise<void> {
    return this.#closeFile();
  }
}

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(text).join(' ');
  if (value && typeof value === 'object') return Object.values(value).map(text).join(' ');
  return value === null || value === undefined ? '' : String(value);
}

/** Whether every word of `query` appears in `haystack`, in any case. */
export function containsWords(haystack: string, query: string): boolean {
  const lower = haystack.toLowerCase();
  return query
    .toLowerCase()
    .split(/\s+/)
    .every((word) => lower.includes(word));
}

/**
 * Whether an entry matches a search: every word of `query` appears (any case) in its subject,
 * addresses, text, stripped text, attachment names, message ids, mailboxHashes, route or warnings.
 */
export function matches(stored: StoredEntry, query: string): boolean {
  if (query.trim() === '') return true;
  const payload = (stored.payload ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const message = payload.message ?? {};
  const haystack = [
    message.subject,
    message.from,
    message.to,
    message.cc,
    message.text,
    message.strippedText,
    message.messageId,
    message.inReplyTo,
    message.mailboxHash,
    (message.attachments as { filename?: unknown }[] | undefined)?.map((attachment) => attachment.filename),
    payload.route,
    payload.envelope,
    payload.warnings,
    payload.id,
    stored.entry.headers['webhook-id'],
    stored.payload === undefined ? stored.entry.body : '',
  ]
    .map(text)
    .join('\n');
  return containsWords(haystack, query);
}
