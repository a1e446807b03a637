import {
  CreateSecretCommand,
  DeleteSecretCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { SigningSecretStore } from '../../core/control/index.ts';
import type { Logger } from '../../core/index.ts';

/**
 * Where the signing secrets of API routes live in Secrets Manager: `mailbridge/routes/<route id>/<secret id>`.
 * The API's role may create and delete secrets under this prefix only, and deliver may read them.
 */
export const ROUTE_SECRET_PREFIX = 'mailbridge/routes/';

/** The secret name of one signing secret of an API route. */
export function routeSecretName(routeId: string, secretId: string): string {
  return `${ROUTE_SECRET_PREFIX}${routeId}/${secretId}`;
}

/** The shortest recovery window Secrets Manager allows: a secret removed by mistake can be restored for a week. */
const RECOVERY_WINDOW_DAYS = 7;

const errorName = (error: unknown) => (error as { name?: string }).name;

/**
 * API routes' signing secrets in Secrets Manager, one secret each, referenced from the route as
 * `{ secretsManager: name }` (deliver reads them as it reads config routes' secrets).
 *
 * `put` creates a new secret and never overwrites one: a name already taken (ResourceExistsException,
 * or InvalidRequestException for a name pending deletion) fails the request. `remove` schedules the
 * deletion with a 7-day recovery window; a secret already gone or already scheduled counts as
 * removed. A failure to remove is logged with the secret's name rather than thrown: the route change
 * it follows is already stored, so answering an error would misreport it, and the only cost of the
 * leftover secret is its monthly fee until someone deletes it. Only names under
 * {@link ROUTE_SECRET_PREFIX} are ever deleted, whatever a stored reference says.
 */
export function secretsManagerSigningSecretStore(
  client: SecretsManagerClient,
  options: { logger?: Logger } = {},
): SigningSecretStore {
  return {
    async put(routeId, secretId, value) {
      const name = routeSecretName(routeId, secretId);
      await client.send(
        new CreateSecretCommand({
          Name: name,
          SecretString: value,
          Description: `mailbridge webhook signing secret of API route ${routeId}`,
          Tags: [{ Key: 'mailbridge:route', Value: routeId }],
        }),
      );
      return { secretsManager: name };
    },

    async remove(ref) {
      if (!('secretsManager' in ref)) return;
      const name = ref.secretsManager;
      if (!name.startsWith(ROUTE_SECRET_PREFIX)) {
        options.logger?.warn('signing secret left alone: not one the API made', { secret: name });
        return;
      }
      try {
        await client.send(
          new DeleteSecretCommand({ SecretId: name, RecoveryWindowInDays: RECOVERY_WINDOW_DAYS }),
        );
      } catch (error) {
        if (errorName(error) === 'ResourceNotFoundException') return;
        // Secrets Manager refuses any change to a secret already scheduled for deletion.
        if (
          errorName(error) === 'InvalidRequestException' &&
          /marked for deletion/i.test((error as Error).message)
        )
          return;
        options.logger?.error('signing secret not deleted; delete it by hand', {
          secret: name,
          error: error as Error,
        });
      }
    },
  };
}
