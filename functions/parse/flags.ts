import type { WebhookFlags } from '../../core/index.ts';

/** A header as the payload carries it: name as written, value unfolded. */
export interface MessageHeader {
  readonly name: string;
  readonly value: string;
}

/** The first value of a header, by case-insensitive name; null when absent. */
export function headerValue(headers: readonly MessageHeader[], name: string): string | null {
  const lower = name.toLowerCase();
  return headers.find((header) => header.name.toLowerCase() === lower)?.value ?? null;
}

const has = (headers: readonly MessageHeader[], name: string) => headerValue(headers, name) !== null;

function precedence(headers: readonly MessageHeader[]): string {
  return (headerValue(headers, 'precedence') ?? '').trim().toLowerCase();
}

/** What is known of a message when its flags are decided. */
export interface FlagInput {
  readonly headers: readonly MessageHeader[];
  /** MAIL FROM; "" is the null reverse-path. */
  readonly mailFrom: string;
  /** Whether the message is a delivery status notification. */
  readonly deliveryReport: boolean;
  /** The From header addresses. */
  readonly from: readonly { readonly address: string }[];
}

// Where non-standard bounces come from (RFC 5321 §4.5.5 null sender, RFC 2142 mailbox names).
const BOUNCER = /^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@/i;

/**
 * `message.flags`: whether a program sent this (RFC 3834 §5), whether it is list or bulk mail
 * (RFC 2369, RFC 2919), and whether it is a bounce, so a ticketing app answers none of them.
 */
export function messageFlags(input: FlagInput): WebhookFlags {
  const { headers } = input;
  const autoSubmitted = (headerValue(headers, 'auto-submitted') ?? '').split(';')[0]!.trim().toLowerCase();
  const kind = precedence(headers);
  const nullSender = input.mailFrom.trim() === '' || input.mailFrom.trim() === '<>';
  const bounce =
    input.deliveryReport || (nullSender && input.from.some((address) => BOUNCER.test(address.address)));
  return {
    autoReply:
      (autoSubmitted !== '' && autoSubmitted !== 'no') ||
      has(headers, 'x-autoreply') ||
      has(headers, 'x-autorespond') ||
      ['auto_reply', 'bulk', 'junk', 'list'].includes(kind) ||
      nullSender,
    bulk: has(headers, 'list-id') || has(headers, 'list-unsubscribe') || kind === 'bulk',
    bounce,
  };
}
