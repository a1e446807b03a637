import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import {
  type ControlStore,
  DomainNotVerifiedError,
  newDomainClaim,
  RouteSync,
  type StoredDomain,
  type StoredRoute,
} from '../../core/control/index.ts';
import { parseConfigText, RelayDeniedError, UnknownRecipientError } from '../../core/index.ts';
import { startTestControlStore, TABLE, type TestControlStore } from '../../harness/control-store.ts';

const config = parseConfigText(
  `
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes: [{ id: inbox, match: ['*@example.test'], endpoints: ['https://inbox.test/'], secret: { env: S } }]
`,
  { source: 'test', runtime: 'local' },
);
const { secret: _secret, ...fields } = config.routes[0]!;

const newRoute = (id: string, match: string[]): Omit<StoredRoute, 'revision'> => {
  const now = new Date().toISOString();
  return {
    route: { ...fields, id, match },
    secrets: [{ id: 'sec_1', ref: { value: 'whsec_dGVzdA==' }, createdAt: now, expiresAt: null }],
    createdAt: now,
    updatedAt: now,
  };
};

async function eventually(check: () => void, timeoutMs = 5000): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      check();
      return Date.now() - started;
    } catch (error) {
      if (Date.now() - started > timeoutMs) throw error;
      await sleep(10);
    }
  }
}

describe('RouteSync', () => {
  let t: TestControlStore;
  let store: ControlStore;

  before(async () => {
    t = await startTestControlStore();
    store = t.store;
  });
  after(() => t.close());

  it('puts API routes and domains in force within a poll, and takes them out again', async () => {
    await store.createRoute(newRoute('preexisting', ['vip@example.test']));
    const sync = new RouteSync(config, store, { pollIntervalMs: 50 });
    await sync.start();
    try {
      assert.equal(sync.index.resolve('vip@example.test').route.id, 'preexisting');
      const created = await store.createRoute(newRoute('tenant', ['*@tenant.test']));
      const now = new Date();
      const claim = await store.claimDomain(newDomainClaim('tenant.test', 'key_a', now), now);
      await eventually(() =>
        assert.throws(() => sync.index.resolve('a@tenant.test'), DomainNotVerifiedError),
      );
      await store.markDomainVerified('tenant.test', claim.token, now.toISOString());
      const lag = await eventually(() =>
        assert.equal(sync.index.resolve('a@tenant.test').route.id, 'tenant'),
      );
      assert.ok(lag < 1000, `in force after ${lag} ms`);
      // The secret the pipeline signs with comes along.
      assert.deepEqual(sync.index.resolve('a@tenant.test').route.secret, [{ value: 'whsec_dGVzdA==' }]);
      await store.deleteRoute('tenant', created.revision);
      await eventually(() => assert.throws(() => sync.index.resolve('a@tenant.test'), UnknownRecipientError));
      await store.deleteDomain('tenant.test');
      await eventually(() => assert.throws(() => sync.index.resolve('a@tenant.test'), RelayDeniedError));
    } finally {
      await sync.stop();
    }
  });

  it('applies each change once and ignores one older than what it holds', async () => {
    const sync = new RouteSync(config, store, { pollIntervalMs: 60_000 });
    await sync.reload();
    const first = await store.createRoute(newRoute('ordered', ['o@example.test']));
    const second = await store.updateRoute(
      { ...first, route: { ...first.route, match: ['p@example.test'] } },
      first.revision,
    );
    const changes = (await store.changesSince('0')).filter((c) => c.key === 'ordered');
    assert.equal(sync.apply(changes[1]!), true);
    assert.equal(sync.apply(changes[1]!), false);
    assert.equal(sync.apply(changes[0]!), false, 'revision 1 after revision 2');
    assert.equal(sync.index.resolve('p@example.test').route.id, 'ordered');
    assert.equal(sync.index.resolve('o@example.test').route.id, 'inbox');
    await store.deleteRoute('ordered', second.revision);
  });

  it('keeps the index in force while the store fails, and catches up after', async () => {
    const { proxy, store: proxied, close } = await t.behindFaultProxy();
    const sync = new RouteSync(config, proxied, { pollIntervalMs: 30 });
    try {
      await sync.start();
      proxy.add({ action: { kind: 'fail' } });
      await store.createRoute(newRoute('during-outage', ['outage@example.test']));
      await sleep(200);
      assert.equal(sync.index.resolve('outage@example.test').route.id, 'inbox');
      assert.equal(sync.index.resolve('vip@example.test').route.id, 'preexisting');
      proxy.clear();
      await eventually(() =>
        assert.equal(sync.index.resolve('outage@example.test').route.id, 'during-outage'),
      );
    } finally {
      await sync.stop();
      await close();
    }
  });

  it('heals a route whose change item was never written, at the next full reload', async () => {
    const sync = new RouteSync(config, store, { pollIntervalMs: 30, fullReloadIntervalMs: 300 });
    await sync.start();
    try {
      // A writer that stopped between the route write and its change item.
      const doc = DynamoDBDocumentClient.from(t.client);
      const orphan = { ...newRoute('orphan', ['orphan@example.test']), revision: 1 };
      await doc.send(
        new PutCommand({
          TableName: TABLE,
          Item: {
            pk: 'ROUTE',
            sk: 'orphan',
            route: orphan.route,
            secrets: orphan.secrets,
            rev: 1,
            createdAt: orphan.createdAt,
            updatedAt: orphan.updatedAt,
          },
        }),
      );
      await sleep(100);
      assert.equal(sync.index.resolve('orphan@example.test').route.id, 'inbox');
      await eventually(() => assert.equal(sync.index.resolve('orphan@example.test').route.id, 'orphan'));
    } finally {
      await sync.stop();
    }
  });
});

describe('RouteSync, many routes at once', () => {
  // A listener answers every session on this thread; a full reload of 100,000 routes takes about
  // a second, every 10 minutes, and a bulk import can bring as many changes to one poll. Counted:
  // how often other work got the thread while 5,000 routes were put in.
  const routes = Array.from({ length: 5000 }, (_, i) => ({
    ...newRoute(`r${i}`, [`user${i}@example.test`]),
    revision: 1,
  }));

  async function turnsDuring(work: (started: () => void) => Promise<void>): Promise<number> {
    let started = false;
    let done = false;
    let turns = 0;
    const otherWork = () => {
      if (started) turns++;
      if (!done) setImmediate(otherWork);
    };
    setImmediate(otherWork);
    await work(() => {
      started = true;
    });
    done = true;
    return turns;
  }

  it('a reload reads and builds in pages, so the thread keeps answering SMTP meanwhile', async () => {
    let sync: RouteSync | undefined;
    const asked: number[] = [];
    const turns = await turnsDuring(async (started) => {
      sync = new RouteSync(config, {
        // Pages of the routes, as the store gives them; the cursor says where the next one starts.
        pageRoutes: async (limit, cursor) => {
          started();
          asked.push(limit);
          const from = Number(cursor ?? 0);
          const to = Math.min(from + limit, routes.length);
          return { items: routes.slice(from, to), nextCursor: to < routes.length ? String(to) : null };
        },
        listDomains: async () => [],
        changesSince: async () => [],
      });
      await sync.reload();
    });
    assert.equal(sync!.index.resolve('user4999@example.test').route.id, 'r4999');
    assert.equal(sync!.index.size.routes, 5000);
    // One page in memory at a time beside the index, never the whole table.
    assert.ok(Math.max(...asked) <= 250, `pages of ${Math.max(...asked)} routes`);
    assert.ok(turns >= 4, `other work ran ${turns} times during the reload`);
  });

  it('a poll applies a bulk of changes in slices too', async () => {
    let sync: RouteSync | undefined;
    const turns = await turnsDuring(async (started) => {
      sync = new RouteSync(config, {
        pageRoutes: async () => ({ items: [], nextCursor: null }),
        listDomains: async () => [],
        changesSince: async () => {
          started();
          return routes.map((route, i) => ({
            id: `01J${String(i).padStart(23, '0')}`,
            kind: 'route' as const,
            key: route.route.id,
            revision: 1,
            route,
          }));
        },
      });
      await sync.reload();
      await sync.poll();
    });
    assert.equal(sync!.index.resolve('user4999@example.test').route.id, 'r4999');
    assert.ok(turns >= 4, `other work ran ${turns} times during the poll`);
  });
});

describe('RouteSync, the full reload', () => {
  /** Routes and domains as the store holds them, in id order, with no change feed: only a reload sees a change. */
  function heldStore(routes: StoredRoute[], domains: StoredDomain[]) {
    return {
      routes,
      domains,
      pageRoutes: async (limit: number, cursor?: string) => {
        const sorted = [...routes].sort((a, b) => (a.route.id < b.route.id ? -1 : 1));
        const after = sorted.filter((r) => cursor === undefined || r.route.id > cursor);
        const items = after.slice(0, limit);
        return { items, nextCursor: after.length > limit ? items.at(-1)!.route.id : null };
      },
      listDomains: async () => domains,
      changesSince: async () => [],
    };
  }
  const stored = (id: string, match: string[], revision: number): StoredRoute => ({
    ...newRoute(id, match),
    revision,
  });
  const domain = (name: string, status: 'pending' | 'verified', revision: number): StoredDomain => ({
    ...newDomainClaim(name, 'key_a', new Date()),
    status,
    revision,
  });

  it('brings the index in force up to the store: changed routes and domains put, gone ones removed, the rest kept', async () => {
    const store = heldStore(
      [stored('a', ['a@example.test'], 1), stored('b', ['b@example.test'], 1), stored('c', ['*@c.test'], 1)],
      [domain('c.test', 'pending', 1), domain('gone.test', 'verified', 1)],
    );
    store.routes.push(stored('g', ['x@gone.test'], 1));
    const sync = new RouteSync(config, store);
    await sync.reload();
    const a = sync.index.resolve('a@example.test').route;
    assert.throws(() => sync.index.resolve('x@c.test'), DomainNotVerifiedError);
    assert.equal(sync.index.resolve('x@gone.test').route.id, 'g');
    // Changes whose change items were lost: b moved, a route and a domain deleted, c.test verified, d made.
    store.routes.splice(0, store.routes.length, store.routes[0]!, stored('b', ['b2@example.test'], 2));
    store.routes.push(stored('c', ['*@c.test'], 1), stored('d', ['d@example.test'], 1));
    store.domains.splice(0, store.domains.length, domain('c.test', 'verified', 2));
    await sync.reload();
    assert.equal(sync.index.resolve('a@example.test').route, a, 'an unchanged route is kept as it was');
    assert.equal(sync.index.resolve('b2@example.test').route.id, 'b');
    assert.equal(sync.index.resolve('b@example.test').route.id, 'inbox');
    assert.equal(sync.index.resolve('x@c.test').route.id, 'c');
    assert.equal(sync.index.resolve('d@example.test').route.id, 'd');
    assert.throws(() => sync.index.resolve('x@gone.test'), RelayDeniedError);
    assert.deepEqual(sync.index.size, { routes: 4, domains: 1 });
  });
});
