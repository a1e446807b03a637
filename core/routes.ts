import { RE2JS } from 're2js';
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

/**
 * What runs a `/regex/` pattern. The config file's run on JavaScript's engine, as their operators
 * wrote them; those made through the API on RE2's (re2js), whose time is linear in the address:
 * anyone may send the RCPT that tests them, and a backtracking pattern such as `/(a+)+b/` would
 * hold the listener's event loop for minutes.
 */
export type RegexEngine = 'js' | 're2';

/**
 * The largest RE2 program (`programSize()`) an API regex may compile to: a test costs up to about
 * 12 ns per instruction and character, 0.6 ms for this size and the longest address. Typical
 * patterns are 20 to 50 (`/^support-[a-z0-9]+@example\.com$/`: 26).
 */
export const MAX_RE2_PROGRAM_SIZE = 200;

// RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets. smtp-server takes RCPTs of up
// to 16 KB, and a test's time grows with the address.
const MAX_ADDRESS_LENGTH = 254;

const RE2_FLAGS: Readonly<Record<string, number>> = { i: 0, m: RE2JS.MULTILINE, s: RE2JS.DOTALL, u: 0 };

/** A `/regex/` pattern as a case-insensitive search of an address, as `RegExp.test`; throws why it cannot be. */
function compileRegex(pattern: string, engine: RegexEngine): (text: string) => boolean {
  const [, body, flags] = /^\/(.*)\/([a-z]*)$/.exec(pattern) ?? [];
  if (body === undefined || flags === undefined) throw new Error('missing closing "/"');
  if (engine === 'js') {
    // `g` and `y` make test() resume from where the last match ended: every other RCPT would fail.
    const stateful = /[gy]/.exec(flags)?.[0];
    if (stateful) throw new Error(`flag "${stateful}": it makes a test depend on the one before; drop it`);
    const regex = new RegExp(body, flags.includes('i') ? flags : `${flags}i`);
    return (text) => regex.test(text);
  }
  let bits = RE2JS.CASE_INSENSITIVE;
  for (const flag of flags) {
    const bit = RE2_FLAGS[flag];
    if (bit === undefined) throw new Error(`flag "${flag}": RE2 takes i, m, s and u`);
    bits |= bit;
  }
  let regex: RE2JS;
  try {
    regex = RE2JS.compile(body, bits);
  } catch (error) {
    throw new Error(`not an RE2 pattern (no lookaround, no backreferences): ${(error as Error).message}`);
  }
  if (regex.programSize() > MAX_RE2_PROGRAM_SIZE) {
    throw new Error(
      `too large: an RE2 program of ${regex.programSize()} instructions, at most ${MAX_RE2_PROGRAM_SIZE}; split it, or use exact addresses and globs`,
    );
  }
  // exec, not test: test runs RE2's DFA, which keeps up to 8 MiB of states per pattern (addresses
  // made to need new states grew the heap 427 MB in 30 RCPTs over 100 patterns); exec runs a one-pass
  // or bit-state matcher (each instruction at each position at most once) that keeps nothing.
  return (text) => text.length <= MAX_ADDRESS_LENGTH && regex.exec(text) !== null;
}

/**
 * A `*` glob as a test of the whole text (both lowercase). Each piece between stars is taken at its
 * first place after the one before, which is where a match can take it too: time linear in the
 * text for a given glob, where a regular expression of `a*a*a*…` backtracks for seconds.
 */
export function globMatcher(glob: string): (text: string) => boolean {
  const [first = '', ...pieces] = glob.split('*');
  const last = pieces.pop();
  if (last === undefined) return (text) => text === first;
  return (text) => {
    const end = text.length - last.length;
    if (end < first.length || !text.startsWith(first) || !text.endsWith(last)) return false;
    let at = first.length;
    for (const piece of pieces) {
      const found = text.indexOf(piece, at);
      if (found === -1 || found + piece.length > end) return false;
      at = found + piece.length;
    }
    return true;
  };
}

/** Why a `match` pattern cannot be used, or undefined; `engine` is the one its `/regex/` would run on. */
export function matchIssue(pattern: string, engine: RegexEngine): string | undefined {
  if (pattern.startsWith('/')) {
    try {
      compileRegex(pattern, engine);
    } catch (error) {
      return `bad pattern: ${(error as Error).message}`;
    }
    return undefined;
  }
  if (!/^[^@\s]+@[^@\s]+$/.test(pattern)) return 'expected local@domain, *@domain or /regex/';
  // "*@" is a catch-all of the one domain named after it, compared as written.
  if (pattern.startsWith('*@') && pattern.includes('*', 2)) {
    return `"${pattern}" would match no mail: a catch-all "*@domain" names one domain, without "*"`;
  }
  return undefined;
}

/** A test of an address as written and, if it has a `+tag`, without it (each regex is tried once when not). */
function writtenOrUntagged(takes: (text: string) => boolean): (address: ParsedAddress) => boolean {
  return (a) => {
    const untagged = `${a.local}@${a.domain}`;
    return takes(a.address) || (untagged !== a.address && takes(untagged));
  };
}

/**
 * Compiles one `match` pattern of a route (exact address, `*@domain`, glob, `/regex/`). Exact
 * addresses beat patterns, patterns beat `*@domain`; equals keep the file's order. A `/regex/` that
 * `engine` cannot run ({@link matchIssue} refuses it; only an API route stored before its engine was
 * RE2 can get here) matches nothing, rather than stop the routes loading.
 */
export function compileMatcher(pattern: string, engine: RegexEngine = 'js'): Matcher {
  if (pattern.startsWith('/')) {
    let takes: (text: string) => boolean;
    try {
      takes = compileRegex(pattern, engine);
    } catch {
      takes = () => false;
    }
    return { specificity: 1, test: writtenOrUntagged(takes) };
  }
  const lower = pattern.toLowerCase();
  const at = lower.lastIndexOf('@');
  const local = lower.slice(0, at);
  const domain = lower.slice(at + 1);
  if (local === '*') return { specificity: 0, test: (a) => a.domain === domain };
  if (local.includes('*')) return { specificity: 1, test: writtenOrUntagged(globMatcher(lower)) };
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
