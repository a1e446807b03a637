import { type Config, resolveSecret, type SecretStringReader } from '../core/index.ts';

/**
 * The SMTP AUTH users of `config.auth.users` with their passwords resolved (inline, environment
 * variable or Secrets Manager), ready for `startListener`'s `authUsers`.
 */
export async function resolveAuthUsers(
  config: Config,
  readers: { env?: NodeJS.ProcessEnv; secretsManager?: SecretStringReader } = {},
): Promise<Map<string, string>> {
  const entries = await Promise.all(
    config.auth.users.map(
      async (user, index) =>
        [user.user, await resolveSecret(user.password, `auth.users[${index}].password`, readers)] as const,
    ),
  );
  return new Map(entries);
}
