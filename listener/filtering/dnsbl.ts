import { isIP } from 'node:net';
import { type DnsblConfig, plainAddress } from '../../core/filtering/index.ts';
import type { DnsResolver } from './sender-auth.ts';

/** What the blocklists say about one client address. */
export interface DnsblResult {
  /** Whether the weights of the listing zones reach the threshold. */
  readonly listed: boolean;
  readonly score: number;
  /** The zones that list the address. */
  readonly zones: readonly string[];
}

function ipv6Nibbles(address: string): string[] {
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((group: string) => group.padStart(4, '0').split(''));
}

/**
 * The DNSBL query name of an address in a zone (RFC 5782 §2.1, §2.4): the IPv4 octets reversed,
 * or the 32 nibbles of the full IPv6 address reversed, then the zone.
 */
export function dnsblQueryName(address: string, zone: string): string | undefined {
  const ip = plainAddress(address);
  const family = isIP(ip);
  if (family === 4) return `${ip.split('.').reverse().join('.')}.${zone}`;
  if (family === 6 && !ip.includes('.')) return `${ipv6Nibbles(ip).reverse().join('.')}.${zone}`;
  return undefined;
}

// RFC 5782 §2.3: a listing is an A record in 127.0.0.0/8. 127.255.255.0/24 is what large lists
// answer for refused or malformed queries (Spamhaus' return codes): an error, not a listing.
const isListing = (answer: string) => answer.startsWith('127.') && !answer.startsWith('127.255.255.');

const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Looks client addresses up in the configured zones through an injected resolver, in parallel,
 * within `timeout`; answers are cached per address (`cacheTtl` for a listing, `negativeCacheTtl`
 * otherwise, at most `maxEntries` addresses), so a client's reconnects cost no new queries. A
 * zone that fails or has not answered in time counts as not listing, and that result is not cached.
 */
export class DnsblChecker {
  readonly #config: DnsblConfig;
  readonly #resolve: DnsResolver;
  readonly #now: () => number;
  readonly #maxEntries: number;
  readonly #cache = new Map<string, { expires: number; result: Promise<DnsblResult> }>();

  constructor(
    config: DnsblConfig,
    resolve: DnsResolver,
    options: { now?: () => number; maxEntries?: number } = {},
  ) {
    this.#config = config;
    this.#resolve = resolve;
    this.#now = options.now ?? Date.now;
    this.#maxEntries = options.maxEntries ?? 10_000;
  }

  check(address: string): Promise<DnsblResult> {
    const key = plainAddress(address).toLowerCase();
    const hit = this.#cache.get(key);
    if (hit && hit.expires > this.#now()) return hit.result;
    const lookup = this.#lookUp(key);
    const entry = { expires: Number.POSITIVE_INFINITY, result: lookup.then(({ result }) => result) };
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    if (this.#cache.size > this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    void lookup.then(({ result, complete }) => {
      if (this.#cache.get(key) !== entry) return;
      if (!complete) this.#cache.delete(key);
      else
        entry.expires =
          this.#now() + 1000 * (result.listed ? this.#config.cacheTtl : this.#config.negativeCacheTtl);
    });
    return entry.result;
  }

  async #lookUp(address: string): Promise<{ result: DnsblResult; complete: boolean }> {
    let complete = true;
    const answers = await Promise.all(
      this.#config.zones.map(async ({ zone, weight }) => {
        const name = dnsblQueryName(address, zone);
        if (!name) return undefined;
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), this.#config.timeout * 1000);
        });
        try {
          const answer = await Promise.race([this.#resolve(name, 'A') as Promise<string[]>, late]);
          if (answer === 'late') complete = false;
          else if (answer.some(isListing)) return { zone, weight };
        } catch (error) {
          if (!NOT_FOUND.has((error as { code?: string }).code ?? '')) complete = false;
        } finally {
          clearTimeout(timer);
        }
        return undefined;
      }),
    );
    const listing = answers.filter((answer) => answer !== undefined);
    const score = listing.reduce((sum, { weight }) => sum + weight, 0);
    const zones = listing.map(({ zone }) => zone);
    return { result: { listed: score >= this.#config.threshold, score, zones }, complete };
  }
}
