import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Reply addresses for reply-by-email: `reply+<token>@your-domain`, where the token carries a
 * reference (a ticket or thread id) and an expiry, signed with HMAC-SHA256 under a secret and a
 * tenant. The receiver reads the token back from the webhook's `mailboxHash` and knows which
 * ticket a reply belongs to without trusting the From header. The token is lowercase RFC 4648
 * base32 (letters and digits 2–7): MTAs that lowercase local parts cannot break it, and
 * `reply+<token>` stays within the 64 characters RFC 5321 §4.5.3.1.1 allows a local part.
 */

const VERSION = 1;
const MAC_BYTES = 10; // 80 bits: forging one takes 2^79 tries on average, each a delivered email.
const HEADER_BYTES = 1 + 4; // version, expiry (unix seconds, u32)
/** The longest reference, in UTF-8 bytes, that keeps the token at 58 characters. */
export const MAX_REPLY_REFERENCE_BYTES = 21;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function fromBase32(text: string): Buffer | undefined {
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const char of text.toLowerCase()) {
    const digit = ALPHABET.indexOf(char);
    if (digit < 0) return undefined;
    value = ((value << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function mac(secret: string, tenant: string, signed: Buffer): Buffer {
  // The tenant is signed but not carried: a token made for one tenant never verifies for another.
  return createHmac('sha256', secret)
    .update(`mailbridge-reply-token\0${tenant}\0`)
    .update(signed)
    .digest()
    .subarray(0, MAC_BYTES);
}

function checkSecret(secret: string): void {
  if (Buffer.byteLength(secret) < 16) throw new Error('a reply-token secret needs at least 16 bytes');
}

/** What a reply token says. */
export interface ReplyTokenInput {
  /** The app's id of what is being replied to (ticket, thread); at most 21 UTF-8 bytes. */
  readonly reference: string;
  /** The tenant the address belongs to; part of the signature, not of the token. */
  readonly tenant: string;
  /** After this the token no longer verifies (second precision). */
  readonly expiresAt: Date;
}

/** The token for {@link createReplyAddress}: base32, at most 58 characters. */
export function createReplyToken(secret: string, input: ReplyTokenInput): string {
  checkSecret(secret);
  const reference = Buffer.from(input.reference, 'utf8');
  if (reference.length === 0 || reference.length > MAX_REPLY_REFERENCE_BYTES)
    throw new Error(`a reply reference takes 1 to ${MAX_REPLY_REFERENCE_BYTES} UTF-8 bytes`);
  const seconds = Math.floor(input.expiresAt.getTime() / 1000);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff)
    throw new Error('expiresAt is out of range');
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(VERSION, 0);
  header.writeUInt32BE(seconds, 1);
  const signed = Buffer.concat([header, reference]);
  return base32(Buffer.concat([signed, mac(secret, input.tenant, signed)]));
}

/** `reply+<token>@domain` (the prefix is yours to choose; route it to your reply endpoint). */
export function createReplyAddress(
  secret: string,
  input: ReplyTokenInput & { readonly domain: string; readonly prefix?: string },
): string {
  return `${input.prefix ?? 'reply'}+${createReplyToken(secret, input)}@${input.domain}`;
}

/** Why a token did not verify. */
export type ReplyTokenFailure = 'malformed' | 'bad_signature' | 'expired';

/** The outcome of {@link verifyReplyToken}. */
export type ReplyTokenResult =
  | { readonly ok: true; readonly reference: string; readonly tenant: string; readonly expiresAt: Date }
  | { readonly ok: false; readonly reason: ReplyTokenFailure };

/** Options of {@link verifyReplyToken}. */
export interface VerifyReplyTokenOptions {
  /** The tenant the reply must belong to, or how to find it from the (not yet trusted) reference. */
  readonly tenant: string | ((reference: string) => string | undefined);
  /** @default new Date() */
  readonly now?: Date;
}

/**
 * Verifies the `mailboxHash` of an incoming reply (the token of a reply address, any case).
 * `secrets` may list several during a rotation: the first is the current one, any one verifies.
 */
export function verifyReplyToken(
  mailboxHash: string | null,
  secrets: string | readonly string[],
  options: VerifyReplyTokenOptions,
): ReplyTokenResult {
  const bytes = mailboxHash ? fromBase32(mailboxHash) : undefined;
  if (!bytes || bytes.length <= HEADER_BYTES + MAC_BYTES || bytes[0] !== VERSION)
    return { ok: false, reason: 'malformed' };
  const signed = bytes.subarray(0, bytes.length - MAC_BYTES);
  const given = bytes.subarray(bytes.length - MAC_BYTES);
  const reference = signed.subarray(HEADER_BYTES).toString('utf8');
  const tenant = typeof options.tenant === 'string' ? options.tenant : options.tenant(reference);
  if (tenant === undefined) return { ok: false, reason: 'bad_signature' };
  const valid = ([] as string[])
    .concat(secrets)
    .some((secret) => timingSafeEqual(mac(secret, tenant, signed), given));
  if (!valid) return { ok: false, reason: 'bad_signature' };
  const expiresAt = new Date(signed.readUInt32BE(1) * 1000);
  if ((options.now ?? new Date()).getTime() > expiresAt.getTime()) return { ok: false, reason: 'expired' };
  return { ok: true, reference, tenant, expiresAt };
}
