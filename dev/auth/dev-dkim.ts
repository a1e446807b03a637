import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The dev zone, where example.com's SPF, DMARC and DKIM key are. */
export const DEV_DNS_ZONE_FILE = join(import.meta.dirname, 'zone.yaml');

/** The dev DKIM key: its public half is `mailbridge-dev._domainkey.example.com` in the dev zone. */
export const DEV_DKIM = {
  signingDomain: 'example.com',
  selector: 'mailbridge-dev',
  privateKeyFile: join(import.meta.dirname, 'dkim-private.pem'),
} as const;

/**
 * DKIM-signs a message (RFC 6376, relaxed/relaxed, rsa-sha256) with the dev key, or another:
 * returns the message with its DKIM-Signature header prepended, as `mailbridge send --dkim` sends
 * it. The From domain must be the signing domain (or below it) for DMARC to pass.
 */
export async function dkimSignMessage(
  message: Buffer | string,
  options: { signingDomain?: string; selector?: string; privateKey?: string | Buffer } = {},
): Promise<Buffer> {
  const signature = {
    signingDomain: options.signingDomain ?? DEV_DKIM.signingDomain,
    selector: options.selector ?? DEV_DKIM.selector,
    privateKey: options.privateKey ?? readFileSync(DEV_DKIM.privateKeyFile),
  };
  // Loaded here: the `mailbridge` command imports this module, and only `send --dkim` signs.
  const { dkimSign } = await import('mailauth');
  // mailauth 7.1.0 signs only what is in signatureData: the same fields at the top level, as its
  // types allow, give no signature and no error.
  const result = await dkimSign(message, {
    ...signature,
    signatureData: [signature],
    canonicalization: 'relaxed/relaxed',
    algorithm: 'rsa-sha256',
  });
  if (result.errors.length > 0 || !result.signatures) {
    throw new Error(`DKIM signing failed: ${result.errors.map((error) => error.err.message).join('; ')}`);
  }
  return Buffer.concat([
    Buffer.from(result.signatures),
    Buffer.isBuffer(message) ? message : Buffer.from(message),
  ]);
}
