import ipaddr from 'ipaddr.js';
import { type SmtpError, TooManyConnectionsError } from '../core/index.ts';

/**
 * The network of a client address for per-network limits: its /24 for IPv4 (an IPv4-mapped IPv6
 * address counts as IPv4), its /64 for IPv6, the smallest block a provider hands one customer.
 */
export function networkOf(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  const ip = ipaddr.process(address);
  return ip.kind() === 'ipv4'
    ? `${ipaddr.IPv4.networkAddressFromCIDR(`${ip}/24`)}/24`
    : `${ipaddr.IPv6.networkAddressFromCIDR(`${ip}/64`)}/64`;
}

/** Open sessions counted per key, with a limit per key. */
class Tally {
  readonly #limit: number;
  readonly #counts = new Map<string, number>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  full(key: string): boolean {
    return (this.#counts.get(key) ?? 0) >= this.#limit;
  }

  add(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  remove(key: string): void {
    const left = (this.#counts.get(key) ?? 1) - 1;
    if (left > 0) this.#counts.set(key, left);
    else this.#counts.delete(key);
  }
}

/** Connections open overall, per client address and per client network ({@link networkOf}). */
export class ConnectionLimits {
  readonly #max: number;
  readonly #perIp: Tally;
  readonly #perNetwork: Tally;
  readonly #admitted = new Map<string, { address: string; network: string }>();

  constructor(limits: {
    maxConnections: number;
    maxConnectionsPerIp: number;
    maxConnectionsPerNetwork: number;
  }) {
    this.#max = limits.maxConnections;
    this.#perIp = new Tally(limits.maxConnectionsPerIp);
    this.#perNetwork = new Tally(limits.maxConnectionsPerNetwork);
  }

  /** Sessions counted in now. */
  get open(): number {
    return this.#admitted.size;
  }

  has(sessionId: string): boolean {
    return this.#admitted.has(sessionId);
  }

  /** Counts the session in, or returns why it may not open. */
  admit(sessionId: string, address: string): SmtpError | undefined {
    if (this.#admitted.size >= this.#max) {
      return new TooManyConnectionsError('Too many connections, try again later', 'max_connections');
    }
    if (this.#perIp.full(address)) {
      return new TooManyConnectionsError('Too many connections from your address', 'max_connections_per_ip');
    }
    const network = networkOf(address);
    if (this.#perNetwork.full(network)) {
      return new TooManyConnectionsError(
        'Too many connections from your network',
        'max_connections_per_network',
      );
    }
    this.#perIp.add(address);
    this.#perNetwork.add(network);
    this.#admitted.set(sessionId, { address, network });
    return undefined;
  }

  release(sessionId: string): void {
    const admitted = this.#admitted.get(sessionId);
    if (admitted === undefined) return;
    this.#admitted.delete(sessionId);
    this.#perIp.remove(admitted.address);
    this.#perNetwork.remove(admitted.network);
  }
}
