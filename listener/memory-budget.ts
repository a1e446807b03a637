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
