import { resolve as systemResolve } from 'node:dns/promises';
import type { Transform } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import {
  combineRoutes,
  decideRecipient,
  decideRoute,
  type FilteringFacts,
  type RouteDecision,
  SenderList,
  type SpamScan,
  trimSpamScan,
  type VirusScan,
} from '../../core/filtering/index.ts';
import type { Config, Route, SmtpError } from '../../core/index.ts';
import { DnsblChecker, type DnsblResult } from './dnsbl.ts';
import { ContentScanners } from './scanning.ts';
import { checkSpf, type DnsResolver, type SpfFacts, startDmarc } from './sender-auth.ts';
import { SessionGuard } from './session-guard.ts';

/** Where the filter reports what it saw (the listener's metrics). */
export interface FilterReport {
  /** Both verdicts of one message and the time from the end of DATA to them. */
  scanned(spam: SpamScan, virus: VirusScan, ms: number): void;
  /** One message held back for at least one route, with the first reason. */
  quarantined(reason: string): void;
}

/** The envelope facts a message is screened with. */
export interface ScreenEnvelope {
  readonly mailFrom: string;
  readonly rcptTo: readonly string[];
  readonly remoteAddress: string;
  readonly helo: string;
  readonly authUser: string | null;
}

/**
 * The screening of one message in the DATA pass. `stage` (null when there is nothing to scan)
 * goes between the message and the S3 upload: it feeds the scanners as the bytes go by and holds
 * the end of the stream until the verdicts are in, then ends it with the refusal when every route
 * refuses, so a refused message is never stored (the upload is aborted, no object is made).
 * `facts()` is what the InboundEvent carries, once the stream has ended.
 */
export interface MessageScreen {
  readonly stage: Transform | null;
  facts(): Promise<FilteringFacts>;
}

interface RouteState {
  readonly route: Route;
  readonly allowed: boolean;
  readonly tags: readonly string[];
}

interface SessionState {
  readonly dnsbl: Promise<DnsblResult> | null;
  spf: SpfFacts | null;
  /**
   * The routes of the accepted recipients of the transaction in progress, by the route object the
   * RCPT decision answered with: a Map finds an object by the hash kept in the object itself, and a
   * route id by the hash kept in the id string, one more read from memory per RCPT.
   */
  routes: Map<Route, RouteState>;
}

// RFC 7208 §4.6.4 bounds the lookups; this bounds the time the client waits at MAIL FROM.
const SPF_TIMEOUT_MS = 10_000;
const NO_SENDER_LISTS = { allow: new SenderList([]), block: new SenderList([]) };

/**
 * Issue 14's defences for the listener's session hooks, one call per hook: rate limits and the
 * DNSBL lookup at connect, the AUTH lockout, message rate and SPF at MAIL FROM, each route's
 * sender policy (block and allow lists, DNSBL, SPF) and the dictionary-attack count at RCPT, and
 * at DATA the content scan and DMARC beside the upload with one decision per route before the
 * `250`. Each hook method returns the error to answer, or undefined to go on.
 */
export class SessionFilter {
  readonly #config: Config;
  readonly #resolver: DnsResolver;
  readonly #report: FilterReport;
  readonly #guard: SessionGuard;
  readonly #dnsbl: DnsblChecker | null;
  readonly #scanners: ContentScanners;
  readonly #lists = new WeakMap<Route, { allow: SenderList; block: SenderList }>();
  readonly #sessions = new Map<string, SessionState>();

  constructor(config: Config, options: { resolver?: DnsResolver; report: FilterReport }) {
    this.#config = config;
    this.#resolver = options.resolver ?? ((name, rrtype) => systemResolve(name, rrtype));
    this.#report = options.report;
    this.#guard = new SessionGuard(config.limits);
    this.#dnsbl = config.dnsbl.zones.length > 0 ? new DnsblChecker(config.dnsbl, this.#resolver) : null;
    this.#scanners = new ContentScanners(config.scanners);
  }

  onConnect(session: SMTPServerSession, options: { authPort: boolean }): SmtpError | undefined {
    const limited = this.#guard.onConnect(session, options);
    if (limited) return limited;
    const dnsbl = this.#dnsbl?.check(session.remoteAddress) ?? null;
    this.#sessions.set(session.id, { dnsbl, spf: null, routes: new Map() });
    return undefined;
  }

  authLocked(session: SMTPServerSession): SmtpError | undefined {
    return this.#guard.authLocked(session);
  }

  onAuthFailure(session: SMTPServerSession): SmtpError | undefined {
    return this.#guard.onAuthFailure(session);
  }

  onAuthSuccess(session: SMTPServerSession): void {
    this.#guard.onAuthSuccess(session);
  }

  /** Message rate, then SPF of MAIL FROM when a route acts on SPF or DMARC (RFC 7208 §2.4). */
  async onMailFrom(session: SMTPServerSession, mailFrom: string): Promise<SmtpError | undefined> {
    const limited = this.#guard.onMailFrom(session);
    if (limited) return limited;
    const state = this.#state(session);
    state.routes = new Map();
    state.spf = null;
    const needed = this.#config.routes.some(
      ({ filtering }) => filtering.spf.fail !== 'accept' || filtering.dmarc.reject !== 'accept',
    );
    if (!needed) return undefined;
    state.spf = await checkSpf({
      mailFrom,
      remoteAddress: session.remoteAddress,
      helo: session.hostNameAppearsAs ?? '',
      hostname: this.#config.hostname,
      resolver: this.#resolver,
      timeoutMs: SPF_TIMEOUT_MS,
    });
    return undefined;
  }

  /** The recipient's route's sender policy (see `decideRecipient`); remembers the route for DATA. */
  async onRcptTo(session: SMTPServerSession, route: Route): Promise<SmtpError | undefined> {
    const state = this.#state(session);
    const known = state.routes.get(route);
    if (known) return undefined;
    const decision = decideRecipient(route.filtering, {
      sender: {
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        remoteAddress: session.remoteAddress,
      },
      ...this.#listsOf(route),
      dnsbl: state.dnsbl ? await state.dnsbl : null,
      dnsblAction: this.#config.dnsbl.action,
      spf: state.spf,
    });
    if (decision.refusal) return decision.refusal;
    state.routes.set(route, { route, allowed: decision.allowed, tags: decision.tags });
    return undefined;
  }

  /** After a recipient was refused as unknown or not ours: the dictionary-attack limit. */
  onRcptRefused(session: SMTPServerSession): SmtpError | undefined {
    return this.#guard.onRcptRefused(session);
  }

  /** Starts the screening of the message of `session` (call before any await in onData). */
  startMessage(session: SMTPServerSession, envelope: ScreenEnvelope): MessageScreen {
    const state = this.#state(session);
    const routes = [...state.routes.values()];
    const dmarcRoutes = routes.filter(
      ({ route, allowed }) => !allowed && route.filtering.dmarc.reject !== 'accept',
    );
    const dmarc =
      dmarcRoutes.length > 0 && state.spf
        ? startDmarc({ spf: state.spf, mailFrom: envelope.mailFrom, resolver: this.#resolver })
        : null;
    if (!this.#scanners.enabled && !dmarc) {
      const off = { status: 'unavailable', reason: 'disabled' } as const;
      const decided = this.#decide(routes, { spam: off, virus: off, dmarc: null });
      return { stage: null, facts: () => Promise.resolve(decided.facts) };
    }
    let decision: Promise<{ refusal: SmtpError | null; facts: FilteringFacts }> | undefined;
    const scan = this.#scanners.start(
      {
        mailFrom: envelope.mailFrom,
        rcptTo: envelope.rcptTo,
        remoteAddress: envelope.remoteAddress,
        helo: envelope.helo,
        authUser: envelope.authUser,
      },
      dmarc ? [dmarc] : [],
      {
        // The end of DATA: the stream is ended only once the verdicts say it may be stored.
        beforeEnd: async () => {
          decision = verdicts();
          return (await decision).refusal;
        },
      },
    );
    const verdicts = async () => {
      const ended = performance.now();
      const { spam, virus } = await scan.verdicts();
      this.#report.scanned(spam, virus, performance.now() - ended);
      return this.#decide(routes, { spam, virus, dmarc: dmarc ? await dmarc.result : null });
    };
    return {
      stage: scan.tee,
      facts: async () => {
        if (!decision) throw new Error('the message stream has not ended');
        return (await decision).facts;
      },
    };
  }

  onClose(session: SMTPServerSession): void {
    this.#guard.onClose(session);
    this.#sessions.delete(session.id);
  }

  #decide(
    routes: readonly RouteState[],
    scans: { spam: SpamScan; virus: VirusScan; dmarc: Parameters<typeof decideRoute>[1]['dmarc'] },
  ): { refusal: SmtpError | null; facts: FilteringFacts } {
    const decisions = new Map<string, RouteDecision>(
      routes.map(({ route, allowed }) => [route.id, decideRoute(route.filtering, { ...scans, allowed })]),
    );
    const combined = combineRoutes(decisions);
    const facts: FilteringFacts = { spam: trimSpamScan(scans.spam), virus: scans.virus, routes: {} };
    for (const { route, tags } of routes) {
      const decision = combined.routes.get(route.id)!;
      facts.routes[route.id] = {
        action: decision.action === 'quarantine' ? 'quarantine' : 'deliver',
        reasons: [...tags, ...decision.reasons],
      };
    }
    const held = [...combined.routes.values()].find(({ action }) => action === 'quarantine');
    if (!combined.refusal && held) this.#report.quarantined(held.reasons[0]!);
    return { refusal: combined.refusal, facts };
  }

  #listsOf(route: Route): { allow: SenderList; block: SenderList } {
    const { allow, block } = route.filtering.senders;
    // Most routes list no senders. Lists of their own cost about 1 KB of heap and a native block list
    // per route (102 MiB once mail came for each of 100,000 routes) and a lookup per RCPT.
    if (allow.length === 0 && block.length === 0) return NO_SENDER_LISTS;
    let lists = this.#lists.get(route);
    if (!lists) {
      lists = { allow: new SenderList(allow), block: new SenderList(block) };
      this.#lists.set(route, lists);
    }
    return lists;
  }

  #state(session: SMTPServerSession): SessionState {
    let state = this.#sessions.get(session.id);
    if (!state) {
      state = { dnsbl: null, spf: null, routes: new Map() };
      this.#sessions.set(session.id, state);
    }
    return state;
  }
}
