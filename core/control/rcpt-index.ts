import type { Config, Route } from '../config.ts';
import { RelayDeniedError, UnknownRecipientError } from '../errors.ts';
import { type ParsedAddress, parseAddress, type RecipientRoute, Router } from '../routes.ts';
import { DomainNotVerifiedError } from './errors.ts';

/** A route in the index; `rank` orders routes of equal specificity (config file order, then API routes by age). */
interface Entry {
  readonly route: Route;
  readonly rank: string;
}

interface PatternEntry extends Entry {
  readonly regex: RegExp;
}

/** Where one pattern of an API route sits, so that removing the route touches only its own buckets. */
type Placement =
  | { readonly bucket: Map<string, Entry[]>; readonly key: string; readonly entry: Entry }
  | { readonly bucket: Map<string, PatternEntry[]>; readonly key: string; readonly entry: PatternEntry }
  | { readonly bucket: null; readonly entry: PatternEntry };

const GLOBAL = '';

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'i');
}

function insertSorted<T extends Entry>(list: T[], entry: T): void {
  let at = list.length;
  while (at > 0 && list[at - 1]!.rank > entry.rank) at--;
  list.splice(at, 0, entry);
}

const better = (a: Entry | undefined, b: Entry | undefined) => (!a ? b : !b ? a : a.rank <= b.rank ? a : b);

function firstMatch(list: readonly PatternEntry[] | undefined, address: ParsedAddress, bare: string) {
  if (!list) return undefined;
  for (const entry of list) if (entry.regex.test(address.address) || entry.regex.test(bare)) return entry;
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
 * scan, and changed one route or domain at a time. It is a Router, so it plugs in where one is used.
 *
 * Refusals throw as Router's do: {@link RelayDeniedError} (`550 5.7.1`) for a domain that is not
 * ours, {@link DomainNotVerifiedError} (`550 5.7.1`) for an API domain not verified,
 * {@link UnknownRecipientError} (`550 5.1.1`) when no route takes the address.
 */
export class RcptIndex extends Router {
  readonly #acceptUnverified: boolean;
  readonly #configDomains = new Set<string>();
  readonly #wildcardDomains = new Set<string>();
  readonly #apiDomains = new Map<string, 'pending' | 'verified'>();
  readonly #exact = new Map<string, Entry[]>();
  readonly #catchAll = new Map<string, Entry[]>();
  readonly #domainPatterns = new Map<string, PatternEntry[]>();
  readonly #globalPatterns: PatternEntry[] = [];
  readonly #apiRoutes = new Map<string, Placement[]>();

  constructor(config: Pick<Config, 'domains' | 'routes'>, options: RcptIndexOptions = {}) {
    super({ domains: [], routes: [] });
    this.#acceptUnverified = options.acceptUnverifiedDomains ?? false;
    for (const domain of config.domains) {
      if (domain.startsWith('*.')) this.#wildcardDomains.add(domain.slice(2));
      else this.#configDomains.add(domain);
    }
    const width = String(config.routes.length).length;
    config.routes.forEach((route, order) => {
      this.#place(route, `0${String(order).padStart(width, '0')}`);
    });
  }

  /** Adds or replaces an API route; `createdAt` orders it among routes of equal specificity. */
  putRoute(route: Route, createdAt: string): void {
    this.removeRoute(route.id);
    this.#apiRoutes.set(route.id, this.#place(route, `1${createdAt}\0${route.id}`));
  }

  /** Removes an API route; false when it was not there. Config routes stay. */
  removeRoute(id: string): boolean {
    const placements = this.#apiRoutes.get(id);
    if (!placements) return false;
    for (const placement of placements) {
      const list: Entry[] | undefined =
        placement.bucket === null ? this.#globalPatterns : placement.bucket.get(placement.key);
      if (!list) continue;
      const at = list.indexOf(placement.entry);
      if (at !== -1) list.splice(at, 1);
      if (list.length === 0 && placement.bucket !== null) placement.bucket.delete(placement.key);
    }
    this.#apiRoutes.delete(id);
    return true;
  }

  /** Adds or changes an API domain; config domains are verified by definition and not affected. */
  putDomain(name: string, status: 'pending' | 'verified'): void {
    this.#apiDomains.set(name, status);
  }

  removeDomain(name: string): boolean {
    return this.#apiDomains.delete(name);
  }

  /** How many API routes and domains it holds. */
  get size(): { routes: number; domains: number } {
    return { routes: this.#apiRoutes.size, domains: this.#apiDomains.size };
  }

  override resolve(recipient: string): RecipientRoute {
    const address = parseAddress(recipient);
    if (!address) throw new RelayDeniedError(recipient);
    this.#checkDomain(address.domain, recipient);
    const bare = `${address.local}@${address.domain}`;
    const exact = better(this.#exact.get(address.address)?.[0], this.#exact.get(bare)?.[0]);
    if (exact) return { route: exact.route, address };
    const pattern = better(
      firstMatch(this.#domainPatterns.get(address.domain), address, bare),
      firstMatch(this.#globalPatterns, address, bare),
    );
    if (pattern) return { route: pattern.route, address };
    const catchAll = this.#catchAll.get(address.domain)?.[0];
    if (catchAll) return { route: catchAll.route, address };
    throw new UnknownRecipientError(recipient);
  }

  #checkDomain(domain: string, recipient: string): void {
    if (this.#configDomains.has(domain)) return;
    const api = this.#apiDomains.get(domain);
    if (api === 'verified' || (api === 'pending' && this.#acceptUnverified)) return;
    // `*.example.com` takes every name below example.com, not example.com itself.
    for (let dot = domain.indexOf('.'); dot !== -1; dot = domain.indexOf('.', dot + 1)) {
      if (this.#wildcardDomains.has(domain.slice(dot + 1))) return;
    }
    throw api === 'pending' ? new DomainNotVerifiedError(recipient) : new RelayDeniedError(recipient);
  }

  /** Puts each pattern of a route in its bucket, compiled as Router compiles it. */
  #place(route: Route, rank: string): Placement[] {
    const placements: Placement[] = [];
    const add = (bucket: Map<string, Entry[]>, key: string) => {
      const entry: Entry = { route, rank };
      const list = bucket.get(key) ?? [];
      insertSorted(list, entry);
      bucket.set(key, list);
      placements.push({ bucket, key, entry });
    };
    const addPattern = (regex: RegExp, key: string) => {
      const entry: PatternEntry = { route, rank, regex };
      if (key === GLOBAL) {
        insertSorted(this.#globalPatterns, entry);
        placements.push({ bucket: null, entry });
        return;
      }
      const list = this.#domainPatterns.get(key) ?? [];
      insertSorted(list, entry);
      this.#domainPatterns.set(key, list);
      placements.push({ bucket: this.#domainPatterns, key, entry });
    };
    for (const pattern of route.match) {
      if (pattern.startsWith('/')) {
        const [, body = '', flags = ''] = /^\/(.*)\/([a-z]*)$/.exec(pattern) ?? [];
        addPattern(new RegExp(body, flags.includes('i') ? flags : `${flags}i`), GLOBAL);
        continue;
      }
      const lower = pattern.toLowerCase();
      const at = lower.lastIndexOf('@');
      const local = lower.slice(0, at);
      const domain = lower.slice(at + 1);
      if (local === '*') add(this.#catchAll, domain);
      // A glob can only match addresses in its own domain unless the domain has a `*` too.
      else if (local.includes('*')) addPattern(globToRegExp(lower), domain.includes('*') ? GLOBAL : domain);
      else add(this.#exact, lower);
    }
    return placements;
  }
}
