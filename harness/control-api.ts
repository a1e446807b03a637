import {
  type ApiDeps,
  createApiHandler,
  type KeyScope,
  localSigningSecretStore,
  newApiKey,
} from '../core/control/index.ts';
import { parseConfigText } from '../core/index.ts';
import { type ApiServer, startApiServer } from '../dev/api-server.ts';
import { startTestControlStore, type TestControlStore } from './control-store.ts';
import { noDns } from './dns-zone.ts';

/** The config whose routes and domains the test API shows read-only: `*@example.test` → route `inbox`. */
export const TEST_API_CONFIG = parseConfigText(
  `
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes: [{ id: inbox, match: ['*@example.test'], endpoints: ['https://inbox.test/'], secret: { env: S } }]
`,
  { source: 'test', runtime: 'local' },
);

/** The control plane API served over HTTP on 127.0.0.1:0, on dynalite, as the local runtime serves it. */
export interface TestApi {
  readonly store: TestControlStore;
  readonly server: ApiServer;
  /** Stores a new key and returns its secret and id. */
  key(name: string, scope: KeyScope): Promise<{ secret: string; id: string }>;
  close(): Promise<void>;
}

/** `deps` replaces the defaults: the test config, no DNS, a retry port that queues nothing, a fixed link. */
export async function startTestApi(deps: Partial<Omit<ApiDeps, 'store'>> = {}): Promise<TestApi> {
  const store = await startTestControlStore();
  const server = await startApiServer(
    createApiHandler({
      store: store.store,
      config: TEST_API_CONFIG,
      runtime: 'local',
      mxHost: 'mx.mailbridge.test',
      resolver: noDns,
      secrets: localSigningSecretStore,
      retry: { retry: async () => [] },
      presign: async (raw) => `http://127.0.0.1:9/${raw.bucket}/${raw.key}?X-Amz-Expires=900`,
      ...deps,
    }),
  );
  return {
    store,
    server,
    async key(name, scope) {
      const { secret, stored } = newApiKey(name, scope, new Date());
      await store.store.createKey(stored);
      return { secret, id: stored.id };
    },
    async close() {
      await server.close();
      await store.close();
    },
  };
}
