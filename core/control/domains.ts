import { randomBytes } from 'node:crypto';
import type { DomainRecord } from './schemas.ts';
import type { StoredDomain } from './store.ts';

/** How long a pending claim holds a name before another may replace it. */
export const DOMAIN_CLAIM_DAYS = 7;

/** The TXT record that proves control of a domain's DNS. */
export const VERIFICATION_LABEL = '_mailbridge';
const VERIFICATION_PREFIX = 'mailbridge-verification=';

/** A DNS lookup as `dns.promises.resolve` makes it; TXT answers are `string[][]`. */
export type TxtResolver = (name: string, rrtype: 'TXT') => Promise<unknown>;

/** A new claim of `name`, with a token of its own (192 random bits). */
export function newDomainClaim(name: string, claimedBy: string, now: Date): Omit<StoredDomain, 'revision'> {
  return {
    name,
    status: 'pending',
    token: randomBytes(24).toString('base64url'),
    claimedBy,
    createdAt: now.toISOString(),
    claimExpiresAt: new Date(now.getTime() + DOMAIN_CLAIM_DAYS * 86400_000).toISOString(),
    verifiedAt: null,
  };
}

/** What the domain's owner publishes: the MX pointing at this deployment, and the TXT proof. */
export function domainRecords(name: string, token: string, mxHost: string): DomainRecord[] {
  return [
    { type: 'MX', name, value: `10 ${mxHost}` },
    { type: 'TXT', name: `${VERIFICATION_LABEL}.${name}`, value: `${VERIFICATION_PREFIX}${token}` },
  ];
}

/** DNS did not answer (a timeout, SERVFAIL): the proof is unknown, not missing. */
export class DnsUnavailableError extends Error {
  override name = 'DnsUnavailableError';
}

/**
 * Whether `_mailbridge.<name>` holds this claim's token. "No such name/record" is a plain no; any
 * other resolver error throws {@link DnsUnavailableError}, so a DNS outage never reads as "not yours".
 */
export async function hasDomainProof(resolve: TxtResolver, name: string, token: string): Promise<boolean> {
  let answer: unknown;
  try {
    answer = await resolve(`${VERIFICATION_LABEL}.${name}`, 'TXT');
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return false;
    throw new DnsUnavailableError(
      `DNS lookup of ${VERIFICATION_LABEL}.${name} failed: ${code ?? (error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  // A TXT record may come in several strings of at most 255 bytes (RFC 7208 §3.3): join them.
  const expected = `${VERIFICATION_PREFIX}${token}`;
  return (
    Array.isArray(answer) &&
    answer.some((record) => (Array.isArray(record) ? record.join('') : record) === expected)
  );
}
