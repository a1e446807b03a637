import type { Config, Route } from './config.ts';
import { RelayDeniedError, UnknownRecipientError } from './errors.ts';

/** An address split for routing: `Ticket+abc@Example.COM` → local `ticket`, hash `abc`, domain `example.com`. */
export interface ParsedAddress {
  readonly address: string;
  readonly local: string;
  readonly domain: string;
  /** The part after the first `+` of the local part, or null ("abc" for ticket+abc@…). */
  readonly mailboxHash: string | null;
}

/** Splits and lowercases an address; returns undefined for something that is not local@domain. */
export function parseAddress(address: string): ParsedAddress | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return undefined;
  const fullLocal = address.slice(0, at).toLowerCase();
  const domain = address
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, '');
  const plus = fullLocal.indexOf('+');
  return {
    address: `${fullLocal}@${domain}`,
    local: plus > 0 ? fullLocal.slice(0, plus) : fullLocal,
    domain,
    mailboxHash: plus > 0 ? fullLocal.slice(plus + 1) || null : null,
  };
}

/** A compiled `match` pattern: how specific it is, and whether an address matches. */
export type Matcher = { specificity: 0 | 1 | 2; test: (address: ParsedAddress) => boolean };

/** A `*` glob as a case-insensitive regular expression of the whole text. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'i');
}

/**
 * Compiles one `match` pattern of a route (exact address, `*@domain`, glob, `/regex/`). Exact
 * addresses beat patterns, patterns beat `*@domain`; equals keep the file's order.
 */
export function compileMatcher(pattern: string): Matcher {
  if (pattern.startsWith('/')) {
    const [, body = '', flags = ''] = /^\/(.*)\/([a-z]*)$/.exec(pattern) ?? [];
    const regex = new RegExp(body, flags.includes('i') ? flags : `${flags}i`);
    return {
      specificity: 1,
      test: (a) => regex.test(a.address) || regex.test(`${a.local}@${a.domain}`),
    };
  }
  const lower = pattern.toLowerCase();
  const at = lower.lastIndexOf('@');
  const local = lower.slice(0, at);
  const domain = lower.slice(at + 1);
  if (local === '*') return { specificity: 0, test: (a) => a.domain === domain };
  if (local.includes('*')) {
    const regex = globToRegExp(lower);
    return { specificity: 1, test: (a) => regex.test(a.address) || regex.test(`${a.local}@${a.domain}`) };
  }
  return { specificity: 2, test: (a) => a.address === lower || `${a.local}@${a.domain}` === lower };
}

function domainIsOurs(domains: readonly string[], domain: string): boolean {
  return domains.some((ours) => (ours.startsWith('*.') ? domain.endsWith(ours.slice(1)) : domain === ours));
}

/** Outcome of routing one recipient. */
export type RecipientRoute = { route: Route; address: ParsedAddress };

/** Resolves recipients to routes; built once per config. */
export class Router {
  readonly #domains: readonly string[];
  readonly #matchers: { route: Route; matcher: Matcher }[];

  constructor(config: Pick<Config, 'domains' | 'routes'>) {
    this.#domains = config.domains;
    this.#matchers = config.routes.flatMap((route) =>
      route.match.map((pattern) => ({ route, matcher: compileMatcher(pattern) })),
    );
  }

  /**
   * The route for one recipient. Throws {@link RelayDeniedError} for a domain that is not ours
   * (never an open relay) and {@link UnknownRecipientError} when no route takes the address.
   */
  resolve(recipient: string): RecipientRoute {
    const address = parseAddress(recipient);
    if (!address || !domainIsOurs(this.#domains, address.domain)) throw new RelayDeniedError(recipient);
    // Strictly more specific only: among equals the first in the file wins.
    let best: { route: Route; specificity: number } | undefined;
    for (const { route, matcher } of this.#matchers) {
      if (!matcher.test(address)) continue;
      if (!best || matcher.specificity > best.specificity) best = { route, specificity: matcher.specificity };
    }
    if (!best) throw new UnknownRecipientError(recipient);
    return { route: best.route, address };
  }

  /** Groups the recipients of one message by route, in route order; recipients that resolve nowhere are skipped. */
  group(recipients: readonly string[]): { route: Route; recipients: string[] }[] {
    const byRoute = new Map<string, { route: Route; recipients: string[] }>();
    for (const recipient of recipients) {
      let resolved: RecipientRoute;
      try {
        resolved = this.resolve(recipient);
      } catch {
        continue;
      }
      const entry = byRoute.get(resolved.route.id) ?? { route: resolved.route, recipients: [] };
      entry.recipients.push(recipient);
      byRoute.set(resolved.route.id, entry);
    }
    return [...byRoute.values()];
  }
}
