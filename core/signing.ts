import { createHmac } from 'node:crypto';
import { MailbridgeError } from './errors.ts';

/** The Standard Webhooks headers that identify and sign one delivery. */
export interface WebhookSignatureHeaders {
  readonly 'webhook-id': string;
  readonly 'webhook-timestamp': string;
  readonly 'webhook-signature': string;
}

const SECRET_PREFIX = 'whsec_';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A signing secret that is not `whsec_` followed by standard base64. */
export class InvalidSigningSecretError extends MailbridgeError {
  override name = 'InvalidSigningSecretError';
  constructor(index: number) {
    super(`signing secret #${index + 1} is not "whsec_" followed by base64`);
  }
}

function secretKey(secret: string, index: number): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  // Buffer.from(…, 'base64') skips characters it does not know, so check first rather than sign with a wrong key.
  if (encoded.length === 0 || !BASE64.test(encoded)) throw new InvalidSigningSecretError(index);
  return Buffer.from(encoded, 'base64');
}

/**
 * Signs a webhook as the Standard Webhooks specification defines: HMAC-SHA256 keyed with the
 * base64-decoded `whsec_` secret over `id.timestamp.body`, sent as `v1,<base64>`. During a key
 * rotation every secret signs and the signatures are space-separated, so receivers holding either
 * secret verify. `timestamp` is in seconds since the epoch; `body` is hashed as the exact bytes sent.
 */
export function signWebhook(
  id: string,
  timestamp: number,
  body: string | Uint8Array,
  secrets: readonly string[],
): WebhookSignatureHeaders {
  if (secrets.length === 0) throw new MailbridgeError('no signing secret');
  const seconds = String(Math.floor(timestamp));
  const signatures = secrets.map((secret, index) => {
    const hmac = createHmac('sha256', secretKey(secret, index));
    hmac.update(`${id}.${seconds}.`);
    hmac.update(body);
    return `v1,${hmac.digest('base64')}`;
  });
  return { 'webhook-id': id, 'webhook-timestamp': seconds, 'webhook-signature': signatures.join(' ') };
}
