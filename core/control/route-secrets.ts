import { randomBytes } from 'node:crypto';
import type { Route, SecretRef } from '../config.ts';
import type { StoredRoute, StoredSecret } from './store.ts';

/**
 * Where API routes' signing secrets are kept: Secrets Manager in AWS (the route keeps a
 * `secretsManager` reference), the local store locally. The value is shown once, when it is made.
 */
export interface SigningSecretStore {
  /** Keeps a new secret; returns the reference the route stores instead of the value. */
  put(routeId: string, secretId: string, value: string): Promise<SecretRef>;
  /** Forgets a secret that no longer signs. */
  remove(ref: SecretRef): Promise<void>;
}

/**
 * Local runs: the value stays in the route's record in the local store (inline secrets are
 * allowed only there, as in the config file).
 */
export const localSigningSecretStore: SigningSecretStore = {
  put: async (_routeId, _secretId, value) => ({ value }),
  remove: async () => undefined,
};

/** A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64). */
export function newSigningSecretValue(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** Makes and keeps a new secret for a route. */
export async function makeSigningSecret(
  store: SigningSecretStore,
  routeId: string,
  now: Date,
): Promise<{ secret: StoredSecret; value: string }> {
  const id = `sec_${randomBytes(8).toString('hex')}`;
  const value = newSigningSecretValue();
  const ref = await store.put(routeId, id, value);
  return { secret: { id, ref, createdAt: now.toISOString(), expiresAt: null }, value };
}

/**
 * A rotation, as Standard Webhooks allows it: the new secret signs from now on, and the current
 * ones keep signing beside it (one signature each, space-separated) for at most `overlapSeconds`, so
 * receivers can switch without a failed delivery. A rotation shortens an earlier one's window and
 * never lengthens it. Secrets past their window are dropped: with `overlapSeconds: 0`, every older
 * one, at once (a secret that leaked).
 */
export function rotateSecrets(
  secrets: readonly StoredSecret[],
  fresh: StoredSecret,
  now: Date,
  overlapSeconds: number,
): { keep: StoredSecret[]; drop: StoredSecret[] } {
  const until = now.getTime() + overlapSeconds * 1000;
  const keep: StoredSecret[] = [fresh];
  const drop: StoredSecret[] = [];
  for (const secret of secrets) {
    const ends = Math.min(secret.expiresAt === null ? until : Date.parse(secret.expiresAt), until);
    if (ends <= now.getTime()) drop.push(secret);
    else keep.push({ ...secret, expiresAt: new Date(ends).toISOString() });
  }
  return { keep, drop };
}

/** The route as delivery uses it: the config route's shape, signed by every secret still in its window. */
export function pipelineRoute(stored: StoredRoute, now: Date): Route {
  const secret = stored.secrets
    .filter((s) => s.expiresAt === null || Date.parse(s.expiresAt) > now.getTime())
    .map((s) => s.ref);
  return { ...stored.route, secret };
}
