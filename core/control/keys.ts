import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyScope } from './schemas.ts';
import type { KeyStore, StoredKey } from './store.ts';

const KEY_PREFIX = 'mbk_';
const KEY_SHAPE = /^mbk_[A-Za-z0-9_-]{43}$/;

/**
 * SHA-256 of a key. A key is 256 random bits, so no one can search the hash space for it: a slow
 * password hash (scrypt, argon2) protects guessable secrets and would only make every API request
 * slower here.
 */
function hashKey(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The public id of a key: a prefix of its hash, so a lookup needs no second index. */
function keyIdOf(hash: string): string {
  return `key_${hash.slice(0, 16)}`;
}

/** Whether a string has the shape of a key (`mbk_` and 43 base64url characters): what a client checks before sending it. */
export function isApiKeyShaped(secret: string): boolean {
  return KEY_SHAPE.test(secret);
}

/** A new key: the secret (`mbk_` + 256 random bits, base64url), shown once, and what is stored. */
export function newApiKey(name: string, scope: KeyScope, now: Date): { secret: string; stored: StoredKey } {
  const secret = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  const hash = hashKey(secret);
  return { secret, stored: { id: keyIdOf(hash), name, scope, hash, createdAt: now.toISOString() } };
}

/**
 * The stored key a presented secret belongs to, or undefined. The hashes are compared in constant
 * time; a malformed secret costs no store read.
 */
export async function findApiKey(
  store: Pick<KeyStore, 'getKey'>,
  secret: string,
): Promise<StoredKey | undefined> {
  if (!isApiKeyShaped(secret)) return undefined;
  const hash = hashKey(secret);
  const stored = await store.getKey(keyIdOf(hash));
  if (stored?.hash.length !== hash.length) return undefined;
  return timingSafeEqual(Buffer.from(stored.hash, 'hex'), Buffer.from(hash, 'hex')) ? stored : undefined;
}
