import type * as z from 'zod';
import type { SmtpError } from '../errors.ts';
import {
  ContentRejectedError,
  DnsblListedError,
  dmarcRejected,
  SenderBlockedError,
  SpfFailError,
} from './errors.ts';
import type {
  FilteringFacts,
  RouteFiltering,
  SpamScanSchema,
  SpamVerdictSchema,
  UnavailableReasonSchema,
  VirusScanSchema,
  VirusVerdictSchema,
} from './schemas.ts';
import { plainAddress, type SenderFacts, type SenderList } from './senders.ts';

export type UnavailableReason = z.infer<typeof UnavailableReasonSchema>;
export type SpamScan = z.infer<typeof SpamScanSchema>;
export type VirusScan = z.infer<typeof VirusScanSchema>;
export type SpamVerdict = z.infer<typeof SpamVerdictSchema>;
export type VirusVerdict = z.infer<typeof VirusVerdictSchema>;

/** DMARC as far as the listener knows it at the end of DATA (SPF at MAIL FROM, DKIM over the stream). */
export interface DmarcFacts {
  readonly result: 'pass' | 'fail' | 'none' | 'temperror' | 'permerror';
  /** The From domain's effective policy (`p`, `sp` or `np`); null without a record. */
  readonly policy: 'none' | 'quarantine' | 'reject' | null;
  readonly domain: string;
}

/** What to do with the message for one route. `deliver` covers `tag`: the verdicts ride in the payload. */
export interface RouteDecision {
  readonly action: 'deliver' | 'quarantine' | 'reject';
  /** Why, for the message log and metrics (`spam`, `virus`, `scanner_unavailable`, `dmarc_reject`, …). */
  readonly reasons: readonly string[];
  /** The reply when `action` is `reject`. */
  readonly refusal: SmtpError | null;
  readonly spam: SpamVerdict;
  readonly virus: VirusVerdict;
}

// The payload carries the strongest symbols only, so a message with hundreds stays small.
const MAX_SYMBOLS = 50;

/** The scan with its strongest symbols only (what the InboundEvent carries). */
export function trimSpamScan(scan: SpamScan): SpamScan {
  if (scan.status === 'unavailable') return scan;
  const symbols = [...scan.symbols]
    .sort((a, b) => Math.abs(b.score) - Math.abs(a.score))
    .slice(0, MAX_SYMBOLS);
  return { ...scan, symbols };
}

export function spamVerdict(scan: SpamScan, threshold: number): SpamVerdict {
  const trimmed = trimSpamScan(scan);
  if (trimmed.status === 'unavailable')
    return { verdict: 'unavailable', score: null, threshold, symbols: [] };
  const { score, symbols } = trimmed;
  return { verdict: score >= threshold ? 'spam' : 'ham', score, threshold, symbols };
}

export function virusVerdict(scan: VirusScan): VirusVerdict {
  if (scan.status === 'unavailable') return { verdict: 'unavailable', names: [] };
  return { verdict: scan.infected ? 'infected' : 'clean', names: scan.names };
}

const SEVERITY = { deliver: 0, quarantine: 1, reject: 2 } as const;

/**
 * One route's decision on a scanned message. A virus is always acted on; spam, DMARC and an
 * unavailable scanner are not for an allow-listed sender. The strongest action wins; `reasons`
 * lists every finding, including those whose action is only `tag`.
 */
export function decideRoute(
  policy: RouteFiltering,
  facts: { spam: SpamScan; virus: VirusScan; dmarc: DmarcFacts | null; allowed: boolean },
): RouteDecision {
  const spam = spamVerdict(facts.spam, policy.spam.threshold);
  const virus = virusVerdict(facts.virus);
  const findings: { reason: string; action: 'deliver' | 'quarantine' | 'reject'; refusal?: SmtpError }[] = [];
  const act = (configured: 'reject' | 'quarantine' | 'tag') =>
    configured === 'tag' ? 'deliver' : configured;
  if (virus.verdict === 'infected') {
    const refusal = new ContentRejectedError(
      `Message refused: malware found (${virus.names.join(', ')})`,
      'virus',
    );
    findings.push({ reason: 'virus', action: act(policy.virus.action), refusal });
  }
  if (!facts.allowed && spam.verdict === 'spam') {
    const overReject = policy.spam.rejectThreshold !== null && spam.score! >= policy.spam.rejectThreshold;
    const refusal = new ContentRejectedError(`Message refused as spam (score ${spam.score})`, 'spam');
    findings.push({ reason: 'spam', action: overReject ? 'reject' : act(policy.spam.action), refusal });
  }
  const dmarc = facts.dmarc;
  if (
    !facts.allowed &&
    dmarc?.result === 'fail' &&
    dmarc.policy === 'reject' &&
    policy.dmarc.reject !== 'accept'
  ) {
    const action = policy.dmarc.reject === 'refuse' ? 'reject' : 'deliver';
    findings.push({ reason: 'dmarc_reject', action, refusal: dmarcRejected(dmarc.domain) });
  }
  // A scanner that is off is not an outage. An allowed sender skips the spam verdict, so only a
  // missing virus verdict matters for it.
  const down = (scan: SpamScan | VirusScan) => scan.status === 'unavailable' && scan.reason !== 'disabled';
  if (down(facts.virus) || (!facts.allowed && down(facts.spam))) {
    findings.push({
      reason: 'scanner_unavailable',
      action: policy.onUnavailable === 'tag' ? 'deliver' : 'quarantine',
    });
  }
  const strongest = findings.reduce<(typeof findings)[number] | undefined>(
    (best, finding) => (!best || SEVERITY[finding.action] > SEVERITY[best.action] ? finding : best),
    undefined,
  );
  const action = strongest?.action ?? 'deliver';
  return {
    action,
    reasons: findings.map((finding) => finding.reason),
    refusal: action === 'reject' ? (strongest?.refusal ?? null) : null,
    spam,
    virus,
  };
}

/**
 * The one DATA reply for a message whose recipients belong to several routes. SMTP answers DATA
 * once for all recipients (RFC 5321 §4.2.5 is for LMTP only), so the message is refused only when
 * every route refuses it; otherwise a refusing route's copy is quarantined instead — accepted mail
 * is never silently dropped — and the reason says so.
 */
export function combineRoutes(decisions: ReadonlyMap<string, RouteDecision>): {
  readonly refusal: SmtpError | null;
  readonly routes: ReadonlyMap<string, RouteDecision>;
} {
  const all = [...decisions.values()];
  if (all.length > 0 && all.every((decision) => decision.action === 'reject')) {
    return { refusal: all[0]!.refusal, routes: decisions };
  }
  const routes = new Map<string, RouteDecision>();
  for (const [id, decision] of decisions) {
    routes.set(
      id,
      decision.action === 'reject'
        ? {
            ...decision,
            action: 'quarantine',
            reasons: [...decision.reasons, 'refused_for_route'],
            refusal: null,
          }
        : decision,
    );
  }
  return { refusal: null, routes };
}

/**
 * The route's answer to an SPF result at RCPT (the route is known only then): `refuse` for a
 * `fail` and a sender the route does not allow, otherwise whether to tag the message.
 */
export function decideSpf(
  policy: RouteFiltering,
  spf: { result: string; domain: string },
  allowed: boolean,
): 'accept' | 'tag' | 'refuse' {
  if (spf.result !== 'fail' || allowed) return 'accept';
  return policy.spf.fail;
}

/** One RCPT's answer from its route's sender policy; `tags` ride along with an accepted recipient. */
export interface RecipientDecision {
  readonly refusal: SmtpError | null;
  readonly tags: readonly string[];
  /** The sender is on the route's allow list: later content policies skip spam and DMARC. */
  readonly allowed: boolean;
}

/**
 * The route's sender policy at RCPT, where the route is first known (RFC 5321 §3.3: a refusal
 * here refuses this recipient only): its block list (`550 5.7.1`), then its allow list (which
 * skips the rest), then the DNS blocklists looked up at connect (`550 5.7.1` naming the zones, or
 * a tag), then SPF from MAIL FROM (`550 5.7.23`, or a tag).
 */
export function decideRecipient(
  policy: RouteFiltering,
  facts: {
    readonly sender: SenderFacts;
    readonly allow: SenderList;
    readonly block: SenderList;
    readonly dnsbl: { readonly listed: boolean; readonly zones: readonly string[] } | null;
    readonly dnsblAction: 'refuse' | 'tag';
    readonly spf: { readonly result: string; readonly domain: string } | null;
  },
): RecipientDecision {
  if (facts.block.matches(facts.sender))
    return { refusal: new SenderBlockedError(), tags: [], allowed: false };
  if (facts.allow.matches(facts.sender)) return { refusal: null, tags: [], allowed: true };
  const tags: string[] = [];
  if (facts.dnsbl?.listed) {
    if (facts.dnsblAction === 'refuse') {
      const refusal = new DnsblListedError(plainAddress(facts.sender.remoteAddress), facts.dnsbl.zones);
      return { refusal, tags, allowed: false };
    }
    tags.push('dnsbl');
  }
  const spf = facts.spf ? decideSpf(policy, facts.spf, false) : 'accept';
  if (spf === 'refuse') return { refusal: new SpfFailError(facts.spf!.domain), tags, allowed: false };
  if (spf === 'tag') tags.push('spf_fail');
  return { refusal: null, tags, allowed: false };
}

// Reasons the verdicts themselves already say; the others are facts about the sender.
const VERDICT_REASONS = new Set(['spam', 'virus', 'scanner_unavailable', 'refused_for_route']);

/**
 * What one route's copy of a message gets at parse time from the listener's {@link FilteringFacts}:
 * the payload's `spam` and `virus`, the warnings that explain them (a scanner that gave no verdict,
 * a sender finding that was only tagged, a release), and the reasons it is held back, or null when
 * it is delivered. A message without facts (received before filtering existed) or a route the
 * listener did not know is delivered with verdicts `unavailable`.
 */
export function routeOutcome(
  facts: FilteringFacts | undefined,
  route: { readonly id: string; readonly filtering: RouteFiltering },
): { spam: SpamVerdict; virus: VirusVerdict; warnings: string[]; quarantine: readonly string[] | null } {
  const off = { status: 'unavailable', reason: 'disabled' } as const;
  const spam = spamVerdict(facts?.spam ?? off, route.filtering.spam.threshold);
  const virus = virusVerdict(facts?.virus ?? off);
  const warnings: string[] = [];
  for (const [scanner, scan] of [
    ['rspamd', facts?.spam],
    ['clamd', facts?.virus],
  ] as const) {
    if (scan?.status === 'unavailable' && scan.reason !== 'disabled')
      warnings.push(`scan_unavailable: ${scanner} ${scan.reason}${scan.detail ? ` (${scan.detail})` : ''}`);
  }
  const decision = facts?.routes[route.id];
  for (const reason of decision?.reasons ?? [])
    if (!VERDICT_REASONS.has(reason)) warnings.push(`sender_policy: ${reason}`);
  const held = decision?.action === 'quarantine';
  if (held && facts?.released) warnings.push(`released: quarantined for ${decision.reasons.join(', ')}`);
  return { spam, virus, warnings, quarantine: held && !facts?.released ? decision.reasons : null };
}
