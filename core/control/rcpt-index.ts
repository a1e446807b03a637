import type { Config, Route } from '../config.ts';
import { RelayDeniedError, UnknownRecipientError } from '../errors.ts';
import {
  compileMatcher,
  globMatcher,
  type Matcher,
  type ParsedAddress,
  parseAddress,
  type RecipientRoute,
  type RegexEngine,
  Router,
} from '../routes.ts';
import { DomainNotVerifiedError } from './errors.ts';
import { RcptTable } from './rcpt-table.ts';

/** A route in the index; `rank` orders routes of equal specificity (config file order, then API routes by age). */
interface Entry {
  readonly route: Route;
  readonly rank: string;
}

/**
 * A glob of one domain, tested on the local part. A single `*` is a prefix and a suffix check (the
 * common case) held in the entry itself, so an RCPT follows no closure; more stars compile as Router
 * compiles them.
 */
interface PatternEntry extends Entry {
  readonly prefix: string;
  readonly suffix: string;
  readonly stars: ((text: string) => boolean) | undefined;
}

/** A regex, or a glob with a `*` in its domain: tests the whole address, as Router does. */
interface GlobalEntry extends Entry {
  readonly matcher: Matcher;
}

/** What the index knows about one domain name: whether mail for it is ours, and its non-exact routes. */
interface DomainEntry {
  /** `config` and `verified` take mail; `pending` is refused; absent: only a `*.parent` config domain can take it. */
  status?: 'config' | 'pending' | 'verified';
  /** Globs of this domain, best first. */
  patterns?: PatternEntry[];
  /** `*@domain` routes, best first; the first is the answer. */
  catchAll?: Entry[];
  /** Exact addresses of this domain in the index: their answers follow its status. */
  readonly addresses: Set<string>;
}

/** A filtering policy held once for every API route that has it. */
interface SharedPolicy {
  readonly key: string;
  readonly filtering: Route['filtering'];
  routes: number;
}

/** Where one pattern of an API route sits: its list, and what to bring up to date after leaving it. */
interface Placement {
  readonly list: Entry[];
  readonly entry: Entry;
  readonly refresh: () => void;
}

/** A pattern entry for a glob's local part; both sides are lowercase already. */
function localGlob(route: Route, rank: string, local: string): PatternEntry {
  const star = local.indexOf('*');
  if (star !== local.lastIndexOf('*'))
    return { route, rank, prefix: '', suffix: '', stars: globMatcher(local) };
  return { route, rank, prefix: local.slice(0, star), suffix: local.slice(star + 1), stars: undefined };
}

function globTakes({ prefix, suffix, stars }: PatternEntry, text: string): boolean {
  if (stars) return stars(text);
  return text.length >= prefix.length + suffix.length && text.startsWith(prefix) && text.endsWith(suffix);
}

function insertSorted<T extends Entry>(list: T[], entry: T): void {
  let at = list.length;
  while (at > 0 && list[at - 1]!.rank > entry.rank) at--;
  list.splice(at, 0, entry);
}

const better = (a: Entry | undefined, b: Entry | undefined) => (!a ? b : !b ? a : a.rank <= b.rank ? a : b);

/** The first (best-ranked) domain glob taking either form of the local part. */
function firstMatch(list: readonly PatternEntry[] | undefined, full: string, bare: string) {
  if (!list) return undefined;
  for (const entry of list)
    if (globTakes(entry, full) || (bare !== full && globTakes(entry, bare))) return entry;
  return undefined;
}

function firstGlobal(list: readonly GlobalEntry[], address: ParsedAddress) {
  for (const entry of list) if (entry.matcher.test(address)) return entry;
  return undefined;
}

export interface RcptIndexOptions {
  /**
   * Accept mail for API domains whose DNS proof is not checked yet. Off in production: a tenant
   * could otherwise receive mail for a domain it does not control.
   * @default false
   */
  acceptUnverifiedDomains?: boolean;
}

/**
 * The RCPT decision over the config file's routes and domains plus those made through the API,
 * with {@link Router}'s semantics (exact address > pattern > `*@domain`, ties by file order then
 * API routes by age; plus-addressing; `*.domain` wildcards), answered from hash maps instead of a
 * scan (most RCPTs from one {@link RcptTable} of their answers), and changed one route or domain at
 * a time. It is a Router, so it plugs in where one is used.
 *
 * Refusals throw as Router's do: {@link RelayDeniedError} (`550 5.7.1`) for a domain that is not
 * ours, {@link DomainNotVerifiedError} (`550 5.7.1`) for an API domain not verified,
 * {@link UnknownRecipientError} (`550 5.1.1`) when no route takes the address.
 */
export class RcptIndex extends Router {
  readonly #acceptUnverified: boolean;
  readonly #domains = new Map<string, DomainEntry>();
  readonly #wildcardDomains = new Set<string>();
  /** Exact addresses: every route per address, best first (for changes). */
  readonly #exact = new Map<string, Entry[]>();
  /**
   * The answer for each exact address of a domain that takes mail now, and what each domain that
   * takes mail answers when it has at most one plain glob: most RCPTs are answered from it alone.
   */
  readonly #table = new RcptTable();
  /** Exact addresses with a `+` in the local part: only these make an address as written (tag included) worth a lookup. */
  #taggedExact = 0;
  /** Regexes, and globs with a `*` in the domain: tried for every address. */
  readonly #globalPatterns: GlobalEntry[] = [];
  /** Each API route's placements, and its filtering policy. */
  readonly #apiRoutes = new Map<string, { placements: Placement[]; policy: SharedPolicy }>();
  /**
   * One object per distinct filtering policy of the API routes, with how many use it. Each route
   * read from the store brings its own copy, though most keep the default: shared, 100,000 routes
   * hold a few policies instead of 50 MiB of copies, and the one the RCPT hook reads is in the cache.
   */
  readonly #policies = new Map<string, SharedPolicy>();

  constructor(config: Pick<Config, 'domains' | 'routes'>, options: RcptIndexOptions = {}) {
    super({ domains: [], routes: [] });
    this.#acceptUnverified = options.acceptUnverifiedDomains ?? false;
    // Wildcards first: whether a domain takes mail depends on them.
    for (const domain of config.domains)
      if (domain.startsWith('*.')) this.#wildcardDomains.add(domain.slice(2));
    for (const domain of config.domains) if (!domain.startsWith('*.')) this.#domain(domain).status = 'config';
    const width = String(config.routes.length).length;
    config.routes.forEach((route, order) => {
      this.#place(route, `0${String(order).padStart(width, '0')}`, 'js');
    });
    for (const [name, entry] of this.#domains) this.#refreshDomainAnswers(name, entry);
  }

  /**
   * Adds or replaces an API route; `createdAt` orders it among routes of equal specificity. Its
   * `/regex/` patterns run on RE2, in time linear in the address (see `RegexEngine`).
   */
  putRoute(route: Route, createdAt: string): void {
    this.removeRoute(route.id);
    const key = JSON.stringify(route.filtering);
    const policy = this.#policies.get(key) ?? { key, filtering: route.filtering, routes: 0 };
    policy.routes++;
    this.#policies.set(key, policy);
    const { filtering } = policy;
    const held = filtering === route.filtering ? route : { ...route, filtering };
    this.#apiRoutes.set(route.id, {
      placements: this.#place(held, `1${createdAt}\0${route.id}`, 're2'),
      policy,
    });
  }

  /** Removes an API route; false when it was not there. Config routes stay. */
  removeRoute(id: string): boolean {
    const held = this.#apiRoutes.get(id);
    if (!held) return false;
    for (const { list, entry, refresh } of held.placements) {
      const at = list.indexOf(entry);
      if (at !== -1) list.splice(at, 1);
      refresh();
    }
    this.#apiRoutes.delete(id);
    if (--held.policy.routes === 0) this.#policies.delete(held.policy.key);
    return true;
  }

  /** Adds or changes an API domain; config domains are verified by definition and not affected. */
  putDomain(name: string, status: 'pending' | 'verified'): void {
    const entry = this.#domain(name);
    if (entry.status === 'config' || entry.status === status) return;
    entry.status = status;
    this.#refreshAnswers(name, entry);
  }

  removeDomain(name: string): boolean {
    const entry = this.#domains.get(name);
    if (!entry || entry.status === undefined || entry.status === 'config') return false;
    entry.status = undefined;
    this.#refreshAnswers(name, entry);
    this.#forgetIfEmpty(name, entry);
    return true;
  }

  /** The ids of the API routes it holds. */
  apiRouteIds(): string[] {
    return [...this.#apiRoutes.keys()];
  }

  /** The names of the API domains it holds, pending or verified. */
  apiDomainNames(): string[] {
    const names: string[] = [];
    for (const [name, entry] of this.#domains) {
      if (entry.status === 'pending' || entry.status === 'verified') names.push(name);
    }
    return names;
  }

  /** How many API routes and domains it holds. */
  get size(): { routes: number; domains: number } {
    return { routes: this.#apiRoutes.size, domains: this.apiDomainNames().length };
  }

  override resolve(recipient: string): RecipientRoute {
    const address = parseAddress(recipient);
    if (!address) throw new RelayDeniedError(recipient);
    // Router matches the address as written and without its +tag.
    const tagged = address.address.length !== address.local.length + address.domain.length + 1;
    const bare = tagged ? `${address.local}@${address.domain}` : address.address;
    const exact =
      tagged && this.#taggedExact > 0 ? this.#bestExact(address.address, bare) : this.#table.address(bare);
    if (exact) return { route: exact, address };
    const localEnd = address.address.length - address.domain.length - 1;
    if (this.#globalPatterns.length === 0) {
      const route = this.#table.domainRoute(address.domain, address.address, localEnd, address.local);
      if (route) return { route, address };
      if (route === undefined) throw new UnknownRecipientError(recipient);
    }
    const entry = this.#domains.get(address.domain);
    if (!this.#takesMail(address.domain, entry?.status)) {
      throw entry?.status === 'pending'
        ? new DomainNotVerifiedError(recipient)
        : new RelayDeniedError(recipient);
    }
    const global = this.#globalPatterns.length > 0 ? firstGlobal(this.#globalPatterns, address) : undefined;
    const local = entry?.patterns && address.address.slice(0, localEnd);
    const pattern = better(local ? firstMatch(entry.patterns, local, address.local) : undefined, global);
    if (pattern) return { route: pattern.route, address };
    const catchAll = entry?.catchAll?.[0];
    if (catchAll) return { route: catchAll.route, address };
    throw new UnknownRecipientError(recipient);
  }

  /** The better of the answers for an address as written and without its tag. */
  #bestExact(written: string, bare: string): Route | undefined {
    const asWritten = this.#table.address(written);
    const untagged = this.#table.address(bare);
    if (!asWritten || !untagged) return asWritten ?? untagged;
    return better(this.#exact.get(written)?.[0], this.#exact.get(bare)?.[0])?.route;
  }

  #takesMail(domain: string, status: DomainEntry['status']): boolean {
    if (status === 'config' || status === 'verified' || (status === 'pending' && this.#acceptUnverified))
      return true;
    // `*.example.com` takes every name below example.com, not example.com itself.
    for (let dot = domain.indexOf('.'); dot !== -1; dot = domain.indexOf('.', dot + 1)) {
      if (this.#wildcardDomains.has(domain.slice(dot + 1))) return true;
    }
    return false;
  }

  #refreshAnswer(address: string, name: string, domain: DomainEntry): void {
    const best = this.#exact.get(address)?.[0];
    this.#table.setAddress(address, best && this.#takesMail(name, domain.status) ? best.route : undefined);
  }

  /** After a domain's status changed: its exact addresses' answers, and its own. */
  #refreshAnswers(name: string, domain: DomainEntry): void {
    for (const address of domain.addresses) this.#refreshAnswer(address, name, domain);
    this.#refreshDomainAnswers(name, domain);
  }

  /** Puts in the table what a domain answers, when it takes mail and has at most one plain glob. */
  #refreshDomainAnswers(name: string, domain: DomainEntry): void {
    const patterns = domain.patterns ?? [];
    const plain = patterns.length === 0 || (patterns.length === 1 && !patterns[0]!.stars);
    const answers =
      plain && this.#takesMail(name, domain.status)
        ? { glob: patterns[0], catchAll: domain.catchAll?.[0]?.route }
        : undefined;
    this.#table.setDomain(name, answers);
  }

  #domain(name: string): DomainEntry {
    let entry = this.#domains.get(name);
    if (!entry) {
      entry = { addresses: new Set() };
      this.#domains.set(name, entry);
    }
    return entry;
  }

  #forgetIfEmpty(name: string, entry: DomainEntry): void {
    const empty = entry.addresses.size === 0 && !entry.patterns?.length && !entry.catchAll?.length;
    if (entry.status === undefined && empty) {
      this.#domains.delete(name);
      this.#table.setDomain(name, undefined);
    }
  }

  /**
   * Puts each pattern of a route in its list; regexes (run by `regexes`: RE2 for API routes) and
   * domain-wide globs compiled by Router's compiler.
   */
  #place(route: Route, rank: string, regexes: RegexEngine): Placement[] {
    const placements: Placement[] = [];
    const add = <T extends Entry>(list: T[], entry: T, refresh: () => void) => {
      insertSorted(list, entry);
      placements.push({ list, entry, refresh });
    };
    for (const pattern of route.match) {
      if (pattern.startsWith('/')) {
        add(
          this.#globalPatterns,
          { route, rank, matcher: compileMatcher(pattern, regexes) },
          () => undefined,
        );
        continue;
      }
      const lower = pattern.toLowerCase();
      const at = lower.lastIndexOf('@');
      const local = lower.slice(0, at);
      const name = lower.slice(at + 1);
      const domain = this.#domain(name);
      const forget = () => this.#forgetIfEmpty(name, domain);
      const changed = () => {
        this.#refreshDomainAnswers(name, domain);
        forget();
      };
      if (local === '*') {
        domain.catchAll ??= [];
        add(domain.catchAll, { route, rank }, changed);
        this.#refreshDomainAnswers(name, domain);
      } else if (local.includes('*') && name.includes('*')) {
        add(this.#globalPatterns, { route, rank, matcher: compileMatcher(lower) }, forget);
      } else if (local.includes('*')) {
        // A glob with a plain domain only matches addresses of that domain: test the local part.
        domain.patterns ??= [];
        add(domain.patterns, localGlob(route, rank, local), changed);
        this.#refreshDomainAnswers(name, domain);
      } else {
        let list = this.#exact.get(lower);
        if (!list) {
          list = [];
          this.#exact.set(lower, list);
          domain.addresses.add(lower);
          if (local.includes('+')) this.#taggedExact++;
        }
        const exact = list;
        add(exact, { route, rank }, () => {
          if (exact.length === 0) {
            this.#exact.delete(lower);
            domain.addresses.delete(lower);
            if (local.includes('+')) this.#taggedExact--;
            forget();
          }
          this.#refreshAnswer(lower, name, domain);
        });
        this.#refreshAnswer(lower, name, domain);
      }
    }
    return placements;
  }
}
