import { BlockList, isIP } from 'node:net';

/** One allow- or block-list entry, parsed. */
export type SenderEntry =
  | { readonly kind: 'address'; readonly address: string }
  | { readonly kind: 'domain'; readonly domain: string }
  | {
      readonly kind: 'network';
      readonly network: string;
      readonly prefix: number;
      readonly family: 'ipv4' | 'ipv6';
    };

/** The sender facts a list is matched against. */
export interface SenderFacts {
  /** MAIL FROM; empty for a bounce (`<>`). */
  readonly mailFrom: string;
  /** The client's IP address. */
  readonly remoteAddress: string;
}

// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, as a dual-stack socket reports IPv4 clients) is IPv4.
export function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

/** Parses "user@domain", "domain", an IP address or a CIDR; undefined when it is none of them. */
export function parseSenderEntry(text: string): SenderEntry | undefined {
  const value = text.trim().toLowerCase();
  const cidr = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(value);
  const family = cidr ? isIP(cidr[1]!) : 0;
  if (cidr && family !== 0) {
    const max = family === 4 ? 32 : 128;
    const prefix = cidr[2] === undefined ? max : Number(cidr[2]);
    if (prefix > max) return undefined;
    return {
      kind: 'network',
      network: plainAddress(cidr[1]!),
      prefix,
      family: family === 4 ? 'ipv4' : 'ipv6',
    };
  }
  if (/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(value)) return { kind: 'address', address: value };
  const domain = value.replace(/^@|^\*\./, '');
  if (/^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(domain))
    return { kind: 'domain', domain };
  return undefined;
}

/** A route's allow or block list: addresses, domains with their subdomains, and networks. */
export class SenderList {
  readonly #addresses = new Set<string>();
  readonly #domains = new Set<string>();
  readonly #networks = new BlockList();
  readonly size: number;

  constructor(entries: readonly SenderEntry[]) {
    this.size = entries.length;
    for (const entry of entries) {
      if (entry.kind === 'address') this.#addresses.add(entry.address);
      else if (entry.kind === 'domain') this.#domains.add(entry.domain);
      else this.#networks.addSubnet(entry.network, entry.prefix, entry.family);
    }
  }

  /** Whether MAIL FROM (its address, its domain or a parent domain) or the client address is listed. */
  matches(sender: SenderFacts): boolean {
    if (this.size === 0) return false;
    const ip = plainAddress(sender.remoteAddress);
    const family = isIP(ip);
    if (family !== 0 && this.#networks.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return true;
    const address = sender.mailFrom.toLowerCase();
    if (this.#addresses.has(address)) return true;
    const at = address.lastIndexOf('@');
    if (at < 0) return false;
    const labels = address.slice(at + 1).split('.');
    return labels.some((_, i) => this.#domains.has(labels.slice(i).join('.')));
  }
}
