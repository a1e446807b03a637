import { Resolver } from 'node:dns/promises';

import type { DnsResolver } from '../../core/index.ts';

export type { DnsResolver };

/** Settings of {@link boundedResolver}. */
export interface BoundedResolverOptions {
  /** Longest wait for one answer; after it the lookup fails with `ETIMEOUT` (a temperror). @default 3000 */
  timeoutMs?: number;
  /** Answers kept. @default 1000 */
  maxEntries?: number;
  /** How long an answer is reused; Node does not report TTLs for every type, so this is fixed. @default 300 */
  ttlSeconds?: number;
  /** How long "no such record" is reused (RFC 2308 negative caching). @default 60 */
  negativeTtlSeconds?: number;
  now?: () => number;
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === 'ENOTFOUND' || code === 'ENODATA';
}

/**
 * Wraps a resolver with a per-lookup deadline and a small TTL/LRU cache. Node caches nothing and
 * one message costs about six TXT lookups (more with SPF includes), so warm functions reuse the
 * answers; the deadline turns a slow DNS server into `temperror` instead of a stuck function.
 */
export function boundedResolver(resolve: DnsResolver, options: BoundedResolverOptions = {}): DnsResolver {
  const timeoutMs = options.timeoutMs ?? 3000;
  const maxEntries = options.maxEntries ?? 1000;
  const ttlMs = (options.ttlSeconds ?? 300) * 1000;
  const negativeTtlMs = (options.negativeTtlSeconds ?? 60) * 1000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { expires: number; answer: Promise<unknown> }>();

  const withDeadline = (name: string, rrtype: string): Promise<unknown> => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new Error(`DNS ${rrtype} ${name}: no answer within ${timeoutMs} ms`);
        reject(Object.assign(error, { code: 'ETIMEOUT' }));
      }, timeoutMs);
      timer.unref();
    });
    return Promise.race([resolve(name, rrtype), deadline]).finally(() => clearTimeout(timer));
  };

  return (name, rrtype) => {
    const key = `${rrtype} ${name.toLowerCase()}`;
    const hit = cache.get(key);
    if (hit && hit.expires > now()) {
      // Re-inserting keeps the Map in least-recently-used order.
      cache.delete(key);
      cache.set(key, hit);
      return hit.answer;
    }
    const answer = withDeadline(name, rrtype);
    const entry = { expires: now() + ttlMs, answer };
    cache.delete(key);
    cache.set(key, entry);
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
    answer.catch((error: unknown) => {
      if (isNotFound(error)) entry.expires = now() + negativeTtlMs;
      else if (cache.get(key) === entry) cache.delete(key);
    });
    return answer;
  };
}

/**
 * The system's DNS servers through `dns.promises.Resolver`, with c-ares' own timeout and retries
 * set low so that {@link boundedResolver}'s deadline is rarely the one that fires.
 */
export function systemResolver(
  options: { timeoutMs?: number; tries?: number; servers?: string[] } = {},
): DnsResolver {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 1000, tries: options.tries ?? 2 });
  if (options.servers) resolver.setServers(options.servers);
  return (name, rrtype) => resolver.resolve(name, rrtype);
}
