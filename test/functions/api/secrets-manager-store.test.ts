import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { secretsManagerReader } from '../../../core/aws/index.ts';
import type { SigningSecretStore } from '../../../core/control/index.ts';
import { createLogger, type Logger, resolveSecret } from '../../../core/index.ts';
import { routeSecretName, secretsManagerSigningSecretStore } from '../../../functions/api/index.ts';
import {
  type SecretsManagerService,
  secretsManagerClient,
  startSecretsManager,
} from '../../../harness/secrets-manager.ts';

/** A logger that keeps what it was told, by level. */
function recordingLogger(): { logger: Logger; lines: { level: string; message: string; extra: unknown }[] } {
  const lines: { level: string; message: string; extra: unknown }[] = [];
  const logger = createLogger('api');
  for (const level of ['info', 'warn', 'error'] as const) {
    logger[level] = ((message: string, extra: unknown) => {
      lines.push({ level, message, extra });
    }) as never;
  }
  return { logger, lines };
}

describe('signing secrets of API routes in Secrets Manager (over its JSON 1.1 API)', () => {
  let service: SecretsManagerService & { url: string; close(): Promise<void> };
  let client: SecretsManagerClient;
  let store: SigningSecretStore;
  let lines: ReturnType<typeof recordingLogger>['lines'];

  before(async () => {
    service = await startSecretsManager();
    client = secretsManagerClient(service.url);
  });
  beforeEach(() => {
    const recorded = recordingLogger();
    lines = recorded.lines;
    store = secretsManagerSigningSecretStore(client, { logger: recorded.logger });
  });
  after(async () => {
    client.destroy();
    await service.close();
  });

  it('creates mailbridge/routes/<route>/<secret>, tagged with the route, and deliver reads it back by the reference', async () => {
    const value = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const ref = await store.put('tenant-a', 'sec_0123456789abcdef', value);
    assert.deepEqual(ref, { secretsManager: 'mailbridge/routes/tenant-a/sec_0123456789abcdef' });
    assert.equal(service.secrets.get('mailbridge/routes/tenant-a/sec_0123456789abcdef'), value);
    const created = service.requests.findLast((r) => r.operation === 'CreateSecret')!;
    assert.deepEqual(created.body.Tags, [{ Key: 'mailbridge:route', Value: 'tenant-a' }]);
    // What deliver does with a route's secret reference.
    const read = await resolveSecret(ref, 'routes[tenant-a].secret[0]', {
      secretsManager: secretsManagerReader(client),
    });
    assert.equal(read, value);
  });

  it('never overwrites: a name already taken, or pending deletion, fails and the stored value stays', async () => {
    service.set(routeSecretName('tenant-b', 'sec_taken'), 'whsec_original');
    await assert.rejects(store.put('tenant-b', 'sec_taken', 'whsec_other'), {
      name: 'ResourceExistsException',
    });
    assert.equal(service.secrets.get('mailbridge/routes/tenant-b/sec_taken'), 'whsec_original');

    service.set(routeSecretName('tenant-b', 'sec_gone'), 'whsec_gone');
    await store.remove({ secretsManager: routeSecretName('tenant-b', 'sec_gone') });
    await assert.rejects(store.put('tenant-b', 'sec_gone', 'whsec_new'), {
      name: 'InvalidRequestException',
      message: /scheduled for deletion/,
    });
  });

  it('removes with a 7-day recovery window, after which deliver can no longer read it', async () => {
    const ref = await store.put('tenant-c', 'sec_1', 'whsec_c1');
    await store.remove(ref);
    assert.equal(service.deleted.get('mailbridge/routes/tenant-c/sec_1'), 7);
    const deletion = service.requests.findLast((r) => r.operation === 'DeleteSecret')!;
    assert.deepEqual(deletion.body, {
      SecretId: 'mailbridge/routes/tenant-c/sec_1',
      RecoveryWindowInDays: 7,
    });
    await assert.rejects(secretsManagerReader(client)('mailbridge/routes/tenant-c/sec_1'), {
      name: 'InvalidRequestException',
    });
    assert.deepEqual(lines, []);
  });

  it('counts a secret already gone or already scheduled for deletion as removed, quietly', async () => {
    const ref = await store.put('tenant-d', 'sec_1', 'whsec_d1');
    await store.remove(ref);
    await store.remove(ref);
    await store.remove({ secretsManager: routeSecretName('tenant-d', 'sec_never') });
    assert.deepEqual(lines, []);
  });

  it('never deletes a secret outside mailbridge/routes/, whatever the reference says', async () => {
    service.set('mailbridge/signing/support', 'config-secret');
    await store.remove({ secretsManager: 'mailbridge/signing/support' });
    await store.remove({ value: 'whsec_inline' });
    assert.equal(service.secrets.get('mailbridge/signing/support'), 'config-secret');
    assert.equal(
      service.requests.some(
        (r) => r.operation === 'DeleteSecret' && r.body.SecretId === 'mailbridge/signing/support',
      ),
      false,
    );
    assert.deepEqual(
      lines.map((l) => [l.level, l.message]),
      [['warn', 'signing secret left alone: not one the API made']],
    );
  });

  it('a delete Secrets Manager refuses is logged with the name, not thrown (the route change is already stored)', async () => {
    const ref = await store.put('tenant-e', 'sec_1', 'whsec_e1');
    service.failNext('DeleteSecret', {
      type: 'AccessDeniedException',
      message: 'User is not authorized to perform: secretsmanager:DeleteSecret',
    });
    await store.remove(ref);
    assert.equal(service.secrets.get('mailbridge/routes/tenant-e/sec_1'), 'whsec_e1', 'still there');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 'error');
    assert.deepEqual((lines[0]!.extra as { secret: string }).secret, 'mailbridge/routes/tenant-e/sec_1');
  });
});
