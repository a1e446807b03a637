import type { Route, SecretRef } from './config.ts';
import { ConfigError } from './errors.ts';

/** Reads a Secrets Manager secret string by name or ARN; implemented by the AWS adapters. */
export type SecretStringReader = (secretId: string) => Promise<string>;

/** Resolves a secret reference to its value; `field` names the config field in errors. */
export async function resolveSecret(
  ref: SecretRef,
  field: string,
  readers: { env?: NodeJS.ProcessEnv; secretsManager?: SecretStringReader } = {},
): Promise<string> {
  if ('value' in ref) return ref.value;
  if ('env' in ref) {
    const value = (readers.env ?? process.env)[ref.env];
    if (!value) throw new ConfigError(field, [`${field}.env: environment variable ${ref.env} is not set`]);
    return value;
  }
  if (!readers.secretsManager) {
    throw new ConfigError(field, [`${field}.secretsManager: no Secrets Manager client in this runtime`]);
  }
  const text = await readers.secretsManager(ref.secretsManager);
  if (ref.jsonKey === undefined) return text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(field, [`${field}.jsonKey: secret ${ref.secretsManager} is not JSON`]);
  }
  const value = (parsed as Record<string, unknown>)[ref.jsonKey];
  if (typeof value !== 'string') {
    throw new ConfigError(field, [
      `${field}.jsonKey: secret ${ref.secretsManager} has no string "${ref.jsonKey}"`,
    ]);
  }
  return value;
}

/**
 * A route's signing secrets (several during a rotation), resolved once per set of references and
 * kept: by the references, not the route id, since an API route's rotation changes them and must
 * sign at once. A failed resolve is forgotten, so the next try reads again instead of failing for
 * the life of the process. Errors name the field as `routes["<id>"].secret[<n>]`.
 */
export function routeSecretsResolver(
  readers: { env?: NodeJS.ProcessEnv; secretsManager?: SecretStringReader } = {},
): (route: Pick<Route, 'id' | 'secret'>) => Promise<string[]> {
  const byRefs = new Map<string, Promise<string[]>>();
  return (route) => {
    const refs = JSON.stringify(route.secret);
    let secrets = byRefs.get(refs);
    if (!secrets) {
      const field = `routes[${JSON.stringify(route.id)}].secret`;
      secrets = Promise.all(
        route.secret.map((ref, index) => resolveSecret(ref, `${field}[${index}]`, readers)),
      );
      byRefs.set(refs, secrets);
      secrets.catch(() => {
        if (byRefs.get(refs) === secrets) byRefs.delete(refs);
      });
    }
    return secrets;
  };
}
