import { type SmtpError, TooManyConnectionsError } from '../core/index.ts';

const AUTH_FAILURE_WINDOW_MS = 15 * 60_000;

/** Connections open overall and per client address. */
export class ConnectionLimits {
  readonly #max: number;
  readonly #maxPerIp: number;
  readonly #perIp = new Map<string, number>();
  readonly #admitted = new Map<string, string>();

  constructor(max: number, maxPerIp: number) {
    this.#max = max;
    this.#maxPerIp = maxPerIp;
  }

  /** Counts the session in, or returns why it may not open. */
  admit(sessionId: string, address: string): SmtpError | undefined {
    if (this.#admitted.size >= this.#max) {
      return new TooManyConnectionsError('Too many connections, try again later', 'max_connections');
    }
    const fromAddress = this.#perIp.get(address) ?? 0;
    if (fromAddress >= this.#maxPerIp) {
      return new TooManyConnectionsError('Too many connections from your address', 'max_connections_per_ip');
    }
    this.#perIp.set(address, fromAddress + 1);
    this.#admitted.set(sessionId, address);
    return undefined;
  }

  release(sessionId: string): void {
    const address = this.#admitted.get(sessionId);
    if (address === undefined) return;
    this.#admitted.delete(sessionId);
    const left = (this.#perIp.get(address) ?? 1) - 1;
    if (left > 0) this.#perIp.set(address, left);
    else this.#perIp.delete(address);
  }
}

/** Failed AUTH attempts per client address within a window; at the limit the address is refused. */
export class AuthFailures {
  readonly #limit: number;
  readonly #failures = new Map<string, { count: number; until: number }>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  blocked(address: string, now = Date.now()): boolean {
    const entry = this.#failures.get(address);
    if (entry && entry.until <= now) this.#failures.delete(address);
    return entry !== undefined && entry.until > now && entry.count >= this.#limit;
  }

  /** Records one failure; true when the address has now reached the limit. */
  record(address: string, now = Date.now()): boolean {
    const entry = this.#failures.get(address);
    const count = entry && entry.until > now ? entry.count + 1 : 1;
    this.#failures.set(address, { count, until: now + AUTH_FAILURE_WINDOW_MS });
    return count >= this.#limit;
  }

  sweep(now = Date.now()): void {
    for (const [address, entry] of this.#failures) if (entry.until <= now) this.#failures.delete(address);
  }
}
