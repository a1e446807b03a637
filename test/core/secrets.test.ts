import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, routeSecretsResolver } from '../../core/index.ts';

describe('routeSecretsResolver', () => {
  it('resolves each reference, reading a set of references once', async () => {
    const reads: string[] = [];
    const secretsOf = routeSecretsResolver({
      env: { HOOK: 'whsec_env' },
      secretsManager: async (id) => {
        reads.push(id);
        return JSON.stringify({ key: 'whsec_sm' });
      },
    });
    const route = {
      id: 'support',
      secret: [{ env: 'HOOK' }, { secretsManager: 'hooks/support', jsonKey: 'key' }],
    };
    assert.deepEqual(await secretsOf(route), ['whsec_env', 'whsec_sm']);
    assert.deepEqual(await secretsOf({ ...route }), ['whsec_env', 'whsec_sm']);
    assert.deepEqual(reads, ['hooks/support']);
    // A rotation changes the references: read at once.
    await secretsOf({ ...route, secret: [{ secretsManager: 'hooks/support-2', jsonKey: 'key' }] });
    assert.deepEqual(reads, ['hooks/support', 'hooks/support-2']);
  });

  it('names the route and reference in an error, and tries again after a failure', async () => {
    const env: NodeJS.ProcessEnv = {};
    const secretsOf = routeSecretsResolver({ env });
    const route = { id: 'billing', secret: [{ value: 'whsec_a' }, { env: 'BILLING_HOOK' }] };
    await assert.rejects(secretsOf(route), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues, [
        'routes["billing"].secret[1].env: environment variable BILLING_HOOK is not set',
      ]);
      return true;
    });
    env.BILLING_HOOK = 'whsec_b';
    assert.deepEqual(await secretsOf(route), ['whsec_a', 'whsec_b']);
  });
});
