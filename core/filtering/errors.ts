import { SmtpError } from '../errors.ts';

/**
 * `550 5.7.1`: the content scan or a sender list refused the message; nothing is stored. The text
 * names the reason (a virus name, a spam score), which tells a legitimate sender what to fix.
 */
export class ContentRejectedError extends SmtpError {
  override name = 'ContentRejectedError';
  constructor(text: string, reason: 'spam' | 'virus' | 'dmarc_reject') {
    super(550, '5.7.1', text, reason);
  }
}

/** `550 5.7.1`: the route blocks this sender (address, domain or client address). */
export class SenderBlockedError extends SmtpError {
  override name = 'SenderBlockedError';
  constructor() {
    super(550, '5.7.1', 'Sender blocked by recipient policy', 'sender_blocked');
  }
}

/** `550 5.7.1`: the client address is listed on DNS blocklists whose weights reach the threshold. */
export class DnsblListedError extends SmtpError {
  override name = 'DnsblListedError';
  constructor(address: string, zones: readonly string[]) {
    super(550, '5.7.1', `Client address [${address}] is listed by ${zones.join(', ')}`, 'dnsbl_listed');
  }
}

/** `550 5.7.23` (RFC 7372 §3.2): SPF says the client may not send for the MAIL FROM domain. */
export class SpfFailError extends SmtpError {
  override name = 'SpfFailError';
  constructor(domain: string) {
    super(550, '5.7.23', `SPF validation failed for ${domain}`, 'spf_fail');
  }
}

/** `550 5.7.1` (RFC 7489 §7.3): the From domain publishes p=reject and the message does not align. */
export function dmarcRejected(domain: string): ContentRejectedError {
  return new ContentRejectedError(
    `Unauthenticated email from ${domain} is not accepted due to its DMARC policy`,
    'dmarc_reject',
  );
}

/**
 * `421 4.7.0` (the session is closed) or `450 4.7.1` (this transaction only): a per-client rate
 * limit. `reason` names the limit for metrics: `connection_rate`, `message_rate`,
 * `failed_recipients`, `auth_lockout`.
 */
export class RateLimitedError extends SmtpError {
  override name = 'RateLimitedError';
  constructor(
    code: 421 | 450,
    text: string,
    reason: 'connection_rate' | 'message_rate' | 'failed_recipients' | 'auth_lockout',
  ) {
    super(code, code === 421 ? '4.7.0' : '4.7.1', text, reason);
  }
}
