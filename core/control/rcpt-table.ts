import type { Route } from '../config.ts';

/** A slot: the key's hash, its lengths, then its bytes (and a domain's glob) inline. */
const SLOT_WORDS = 16;
const HEADER_BYTES = 8;
const INLINE_BYTES = SLOT_WORDS * 4 - HEADER_BYTES;
const FIRST_SLOTS = 16;

/** What a domain answers for an address no exact route takes. */
export interface DomainAnswers {
  /** Its one glob, `prefix*suffix` on the local part (lowercase). */
  readonly glob?: { readonly prefix: string; readonly suffix: string; readonly route: Route };
  readonly catchAll?: Route;
}

/** FNV-1a over the UTF-16 code units; 0 marks an empty slot, so it is never a hash. */
function hashOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash | 1) >>> 0;
}

/** Whether every code unit fits a byte: only such text is held inline. */
function latin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

/**
 * The answers an RCPT most often needs, in one open-addressing table (linear probing, at most half
 * full) over a typed array of 64-byte slots: an exact address and its route, or a domain that takes
 * mail with its one `prefix*suffix` glob and its catch-all. An RCPT reads memory the SMTP work before
 * it pushed out of the caches; a `Map` lookup reads a bucket, an entry and the key string, and a
 * domain's glob reads its objects and strings, each a cache and TLB miss with 100,000 routes. Here the
 * slot holds hash, key and glob in one line, and the route is one more read.
 *
 * Keys are lowercase. An address too long or not Latin-1 is kept in a `Map`; a domain whose name and
 * glob do not fit a slot is not held, and the caller answers it another way.
 */
export class RcptTable {
  #mask = FIRST_SLOTS - 1;
  #words = new Uint32Array(FIRST_SLOTS * SLOT_WORDS);
  #bytes = new Uint8Array(this.#words.buffer);
  /** Per slot: an address's route, or a domain's glob route. */
  #routes: (Route | undefined)[] = new Array(FIRST_SLOTS).fill(undefined);
  /** Per slot: a domain's catch-all route. */
  #catchAlls: (Route | undefined)[] = new Array(FIRST_SLOTS).fill(undefined);
  #used = 0;
  readonly #outsized = new Map<string, Route>();

  /** The route of an exact address. */
  address(address: string): Route | undefined {
    if (address.length <= INLINE_BYTES) {
      const slot = this.#find(address, hashOf(address));
      if (slot >= 0) return this.#routes[slot];
      if (latin1(address)) return undefined;
    }
    return this.#outsized.get(address);
  }

  /** Sets the route of an exact address, or removes it (`undefined`). */
  setAddress(address: string, route: Route | undefined): void {
    if (address.length > INLINE_BYTES || !latin1(address)) {
      if (route) this.#outsized.set(address, route);
      else this.#outsized.delete(address);
    } else if (route) this.#put(address, route, undefined, '', '');
    else this.#remove(address);
  }

  /**
   * Sets what a domain that takes mail answers, or removes it (`undefined`). A domain whose name and
   * glob do not fit a slot is not held.
   */
  setDomain(name: string, answers: DomainAnswers | undefined): void {
    const prefix = answers?.glob?.prefix ?? '';
    const suffix = answers?.glob?.suffix ?? '';
    const fits =
      name.length + prefix.length + suffix.length <= INLINE_BYTES && latin1(name + prefix + suffix);
    if (answers && fits) this.#put(name, answers.glob?.route, answers.catchAll, prefix, suffix);
    else this.#remove(name);
  }

  /**
   * For a domain in the table: the route of its glob if it takes the local part (`text` up to
   * `end`, or `bare`, the local part without its tag), else its catch-all; `undefined` when the
   * domain takes mail but no route takes the address. `null` when the domain is not in the table.
   */
  domainRoute(domain: string, text: string, end: number, bare: string): Route | undefined | null {
    if (domain.length > INLINE_BYTES) return null;
    const slot = this.#find(domain, hashOf(domain));
    if (slot < 0) return null;
    const glob = this.#routes[slot];
    // `bare` is the written local part up to its tag: as long as it, it is the same text.
    const untagged = bare.length === end;
    if (glob && (this.#globTakes(slot, text, end) || (!untagged && this.#globTakes(slot, bare, bare.length))))
      return glob;
    return this.#catchAlls[slot];
  }

  /** Whether the glob held in a domain's slot takes `text` up to `end`. */
  #globTakes(slot: number, text: string, end: number): boolean {
    const lengths = this.#words[slot * SLOT_WORDS + 1]!;
    const keyLength = lengths & 0xff;
    const prefix = (lengths >>> 8) & 0xff;
    const suffix = (lengths >>> 16) & 0xff;
    if (end < prefix + suffix) return false;
    const at = slot * SLOT_WORDS * 4 + HEADER_BYTES + keyLength;
    const bytes = this.#bytes;
    for (let i = 0; i < prefix; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
    for (let i = 0; i < suffix; i++)
      if (bytes[at + prefix + i] !== text.charCodeAt(end - suffix + i)) return false;
    return true;
  }

  /** The slot holding `key`, or `-1 - slot` of the empty slot where it would go. */
  #find(key: string, hash: number): number {
    const words = this.#words;
    const bytes = this.#bytes;
    for (let slot = hash & this.#mask; ; slot = (slot + 1) & this.#mask) {
      const base = slot * SLOT_WORDS;
      const held = words[base]!;
      if (held === 0) return -1 - slot;
      if (held === hash && (words[base + 1]! & 0xff) === key.length) {
        const at = base * 4 + HEADER_BYTES;
        let i = 0;
        while (i < key.length && bytes[at + i] === key.charCodeAt(i)) i++;
        if (i === key.length) return slot;
      }
    }
  }

  #put(key: string, route: Route | undefined, catchAll: Route | undefined, prefix: string, suffix: string) {
    const hash = hashOf(key);
    let slot = this.#find(key, hash);
    if (slot < 0) {
      if ((this.#used + 1) * 2 > this.#mask + 1) {
        this.#grow();
        slot = this.#find(key, hash);
      }
      slot = -1 - slot;
      this.#used++;
    }
    const base = slot * SLOT_WORDS;
    this.#words[base] = hash;
    this.#words[base + 1] = key.length | (prefix.length << 8) | (suffix.length << 16);
    const text = key + prefix + suffix;
    for (let i = 0; i < text.length; i++) this.#bytes[base * 4 + HEADER_BYTES + i] = text.charCodeAt(i);
    this.#routes[slot] = route;
    this.#catchAlls[slot] = catchAll;
  }

  #remove(key: string): void {
    let hole = this.#find(key, hashOf(key));
    if (hole < 0) return;
    const words = this.#words;
    const mask = this.#mask;
    // Backward-shift deletion: a later key of the run whose home is at or before the hole moves into
    // it, so a probe never stops at a hole before its key.
    for (let next = (hole + 1) & mask; words[next * SLOT_WORDS] !== 0; next = (next + 1) & mask) {
      const home = words[next * SLOT_WORDS]! & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        words.copyWithin(hole * SLOT_WORDS, next * SLOT_WORDS, (next + 1) * SLOT_WORDS);
        this.#routes[hole] = this.#routes[next];
        this.#catchAlls[hole] = this.#catchAlls[next];
        hole = next;
      }
    }
    words.fill(0, hole * SLOT_WORDS, (hole + 1) * SLOT_WORDS);
    this.#routes[hole] = undefined;
    this.#catchAlls[hole] = undefined;
    this.#used--;
  }

  #grow(): void {
    const words = this.#words;
    const routes = this.#routes;
    const catchAlls = this.#catchAlls;
    const slots = (this.#mask + 1) * 2;
    this.#mask = slots - 1;
    this.#words = new Uint32Array(slots * SLOT_WORDS);
    this.#bytes = new Uint8Array(this.#words.buffer);
    this.#routes = new Array(slots).fill(undefined);
    this.#catchAlls = new Array(slots).fill(undefined);
    for (let old = 0; old < routes.length; old++) {
      const hash = words[old * SLOT_WORDS]!;
      if (hash === 0) continue;
      let slot = hash & this.#mask;
      while (this.#words[slot * SLOT_WORDS] !== 0) slot = (slot + 1) & this.#mask;
      this.#words.set(words.subarray(old * SLOT_WORDS, (old + 1) * SLOT_WORDS), slot * SLOT_WORDS);
      this.#routes[slot] = routes[old];
      this.#catchAlls[slot] = catchAlls[old];
    }
  }
}
