import type { Readable } from 'node:stream';
import { type AuthenticateResult, authenticate } from 'mailauth';
import { type WebhookAuth, WebhookPayloadSchema } from '../../core/index.ts';
import type { DnsResolver } from './dns.ts';

/** What the SMTP session told us about the sender, from the InboundEvent envelope. */
export interface SenderInfo {
  readonly ip: string;
  readonly helo: string;
  /** MAIL FROM; "" for a null sender, which SPF checks as postmaster@HELO (RFC 7208 §2.4). */
  readonly mailFrom: string;
  /** Our host name, the authserv-id of the results. */
  readonly mta: string;
}

function verdict<R extends string>(value: string | undefined, allowed: readonly R[], otherwise: R): R {
  // mailauth still says "temperr" in places (deprecated spelling of RFC 8601's temperror).
  const normal = value === 'temperr' ? 'temperror' : value;
  return (allowed as readonly string[]).includes(normal ?? '') ? (normal as R) : otherwise;
}

// The verdicts the payload schema allows, so the mapping cannot drift from the published enums.
const VERDICTS = WebhookPayloadSchema.shape.auth.shape;
const SPF = VERDICTS.spf.shape.result.options;
const DKIM = VERDICTS.dkim.element.shape.result.options;
const DMARC = VERDICTS.dmarc.shape.result.options;
const ARC = VERDICTS.arc.shape.result.options;
const POLICIES = VERDICTS.dmarc.shape.policy.unwrap().options;

/** Maps mailauth's verdicts to the payload's `auth` object. */
function toWebhookAuth(result: AuthenticateResult): WebhookAuth {
  const { spf, dkim, dmarc, arc } = result;
  const policy = dmarc ? POLICIES.find((name) => name === dmarc.policy) : undefined;
  return {
    spf: spf
      ? { result: verdict(spf.status.result, SPF, 'permerror'), domain: spf.domain || null }
      : { result: 'none', domain: null },
    // An unsigned message has one "none" row without a domain: that is no signature at all.
    dkim: dkim.results
      .filter((row) => row.signingDomain || row.status.result !== 'none')
      .map((row) => ({
        result: verdict(row.status.result, DKIM, 'permerror'),
        domain: row.signingDomain ?? null,
        selector: row.selector ?? null,
      })),
    dmarc: dmarc
      ? {
          result: verdict(dmarc.status.result, DMARC, 'permerror'),
          policy: policy ?? null,
          domain: (dmarc.status.header?.from as string | undefined) ?? dmarc.domain ?? null,
        }
      : { result: 'none', policy: null, domain: null },
    arc: { result: arc ? verdict(arc.status.result, ARC, 'permerror') : 'none' },
  };
}

/** The verdicts when authentication itself could not run: every check is a temporary error. */
export const AUTH_UNAVAILABLE: WebhookAuth = {
  spf: { result: 'temperror', domain: null },
  dkim: [],
  dmarc: { result: 'temperror', policy: null, domain: null },
  arc: { result: 'temperror' },
};

/** Bounds of the authentication of one message. */
export interface AuthLimits {
  /** After this, every DNS lookup fails at once, so the checks not done yet are `temperror`. */
  readonly deadlineMs: number;
  /**
   * Distinct DKIM/ARC key records looked up; signatures beyond them are `temperror`. mailauth
   * checks every signature in turn, each with its own lookup, so without a bound 25 signatures on
   * name servers that never answer take 25 lookup timeouts.
   */
  readonly maxKeyLookups: number;
}

export const AUTH_LIMITS: AuthLimits = { deadlineMs: 10_000, maxKeyLookups: 10 };

const lookupError = (message: string, code: string) => Object.assign(new Error(message), { code });

/**
 * `resolve` within one message's limits: each lookup raced against the deadline, none after it,
 * and no more than `maxKeyLookups` distinct `._domainkey.` names; `cut` counts the lookups refused.
 */
function limitedResolver(resolve: DnsResolver, limits: AuthLimits, now: () => number) {
  const deadline = now() + limits.deadlineMs;
  const keys = new Set<string>();
  const cut = { late: 0, overBudget: 0 };
  const resolver = (name: string, rrtype: string): Promise<unknown> => {
    const key = name.toLowerCase();
    if (key.includes('._domainkey.') && !keys.has(key)) {
      if (keys.size >= limits.maxKeyLookups) {
        cut.overBudget++;
        return Promise.reject(
          lookupError(`DNS ${rrtype} ${name}: over ${limits.maxKeyLookups} key lookups`, 'ELIMIT'),
        );
      }
      keys.add(key);
    }
    const left = deadline - now();
    if (left <= 0) {
      cut.late++;
      return Promise.reject(lookupError(`DNS ${rrtype} ${name}: authentication deadline passed`, 'ETIMEOUT'));
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        cut.late++;
        reject(lookupError(`DNS ${rrtype} ${name}: authentication deadline passed`, 'ETIMEOUT'));
      }, left);
      timer.unref();
    });
    return Promise.race([resolve(name, rrtype), late]).finally(() => clearTimeout(timer));
  };
  return { resolver, cut };
}

/**
 * SPF, every DKIM signature, DMARC and ARC in one pass over the message (mailauth), with DNS
 * through `resolver`, within `limits`: what they cut is `temperror`, and said in `warnings`. BIMI is
 * off: it costs a lookup and its logo is no use to a webhook.
 */
export async function authenticateMessage(
  message: Readable,
  sender: SenderInfo,
  resolver: DnsResolver,
  limits: AuthLimits = AUTH_LIMITS,
  now: () => number = Date.now,
): Promise<{ auth: WebhookAuth; warnings: string[] }> {
  const limited = limitedResolver(resolver, limits, now);
  const result = await authenticate(message, {
    ip: sender.ip,
    helo: sender.helo,
    sender: sender.mailFrom,
    mta: sender.mta,
    resolver: limited.resolver as (name: string, rrtype: string) => Promise<string[][]>,
    disableBimi: true,
  });
  const warnings: string[] = [];
  if (limited.cut.overBudget > 0) {
    warnings.push(
      `auth_limited: ${limited.cut.overBudget} DKIM/ARC key lookup(s) beyond the ${limits.maxKeyLookups} made; those signatures are temperror`,
    );
  }
  if (limited.cut.late > 0) {
    warnings.push(
      `auth_limited: ${limited.cut.late} DNS lookup(s) past the ${limits.deadlineMs / 1000} s authentication deadline; those checks are temperror`,
    );
  }
  return { auth: toWebhookAuth(result), warnings };
}
