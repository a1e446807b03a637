/** Settings of a {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Events allowed per key within `windowMs`. */
  readonly limit: number;
  readonly windowMs: number;
  /** Keys remembered; past it the least recently seen key is forgotten. */
  readonly maxKeys: number;
  readonly now?: () => number;
}

interface Window {
  /** Start of the current fixed window. */
  start: number;
  current: number;
  previous: number;
}

/**
 * Events per key over a sliding window, approximated by two fixed windows: the count of the
 * previous window weighted by how much of it still overlaps the sliding one, plus the current
 * count (the "sliding window counter"). Three numbers per key, a Map in least-recently-used order
 * capped at `maxKeys`: a flood of distinct addresses costs bounded memory, at the price of
 * forgetting the quietest keys first.
 */
export class RateLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, Window>();

  constructor(options: RateLimiterOptions) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = options.maxKeys;
    this.#now = options.now ?? Date.now;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#windows.size;
  }

  /** The estimated events of `key` in the window ending now. */
  count(key: string): number {
    const window = this.#windows.get(key);
    return window ? this.#estimate(this.#roll(window)) : 0;
  }

  /** Whether `key` has reached the limit, without counting an event. */
  exceeded(key: string): boolean {
    return this.count(key) >= this.#limit;
  }

  /**
   * Counts one event for `key`; true when it is within the limit. A refused event counts too, so
   * a client that keeps knocking stays refused until it slows down.
   */
  hit(key: string): boolean {
    const window = this.#touch(key);
    window.current += 1;
    return this.#estimate(window) <= this.#limit;
  }

  /** Forgets `key` (a successful login clears its failures). */
  reset(key: string): void {
    this.#windows.delete(key);
  }

  #estimate(window: Window): number {
    const overlap = 1 - (this.#now() - window.start) / this.#windowMs;
    return window.current + window.previous * Math.max(0, overlap);
  }

  #roll(window: Window): Window {
    const elapsed = Math.floor((this.#now() - window.start) / this.#windowMs);
    if (elapsed >= 1) {
      window.previous = elapsed === 1 ? window.current : 0;
      window.current = 0;
      window.start += elapsed * this.#windowMs;
    }
    return window;
  }

  #touch(key: string): Window {
    const found = this.#windows.get(key);
    this.#windows.delete(key);
    const window = found ? this.#roll(found) : { start: this.#now(), current: 0, previous: 0 };
    this.#windows.set(key, window);
    if (this.#windows.size > this.#maxKeys) this.#windows.delete(this.#windows.keys().next().value!);
    return window;
  }
}
