import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monotonicFactory } from 'ulid';
import {
  type ControlStore,
  dynamoControlStore,
  ensureControlTable,
  type LogEntry,
  type MessageQuery,
  newDomainClaim,
  type Refusal,
  StoreConflictError,
  StoreRejectedError,
  summarize,
  type TimelineEvent,
} from '../../core/control/index.ts';
import { newMessageId, parseConfigText } from '../../core/index.ts';
import {
  receivedEvent,
  startTestControlStore,
  TABLE,
  type TestControlStore,
} from '../../harness/control-store.ts';
import { synthesizedRoles } from '../deployed/roles.ts';

const eventId = monotonicFactory();
const DAY = 86400_000;
const NOW = Date.now();

const received = (at: number, mailFrom: string, rcptTo: string[]): TimelineEvent =>
  receivedEvent({ at: new Date(at).toISOString(), mailFrom, rcptTo }).event;

function parsed(at: number, subject: string, route: string): TimelineEvent {
  return {
    at: new Date(at + 10).toISOString(),
    type: 'parsed',
    subject,
    from: 'someone@sender.test',
    jobs: [{ route, endpoint: `https://${route}.test/`, webhookId: `msg_${route}` }],
    unrouted: [],
    warnings: [],
  };
}

function deliveredAt(at: number, route: string): TimelineEvent {
  return {
    at: new Date(at + 20).toISOString(),
    type: 'delivered',
    route,
    endpoint: `https://${route}.test/`,
    webhookId: `msg_${route}`,
    status: 200,
  };
}

const query = (fields: Partial<MessageQuery> = {}): MessageQuery => ({ limit: 50, ...fields });

const apiRoute = parseConfigText(
  `
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes: [{ id: tenant-a, match: ['*@a.test'], endpoints: ['https://a.test/hook'], secret: { env: S } }]
`,
  { source: 'test', runtime: 'local' },
).routes[0]!;
const { secret: _secret, ...routeFields } = apiRoute;

describe('DynamoDB control store (dynalite)', () => {
  let t: TestControlStore;
  let store: ControlStore;
  const ids: string[] = [];

  before(async () => {
    t = await startTestControlStore();
    store = t.store;
    // Six messages over three days, newest last.
    const plan = [
      {
        days: 2,
        from: 'alice@sender.test',
        to: ['support@example.test'],
        subject: 'Invoice 42 overdue',
        route: 'billing',
      },
      {
        days: 2,
        from: '',
        to: ['support@example.test'],
        subject: 'Undelivered Mail Returned',
        route: 'bounces',
      },
      {
        days: 1,
        from: 'bob@sender.test',
        to: ['sales@example.test', 'support@example.test'],
        subject: 'Quote',
        route: 'sales',
      },
      {
        days: 1,
        from: 'alice@sender.test',
        to: ['sales@example.test'],
        subject: 'Re: Invoice 42',
        route: 'billing',
      },
      {
        days: 0,
        from: 'Carol@Sender.test',
        to: ['support@example.test'],
        subject: 'Login help',
        route: 'support',
      },
      {
        days: 0,
        from: 'alice@sender.test',
        to: ['support@example.test'],
        subject: 'invoice copy',
        route: 'billing',
      },
    ];
    for (const [i, m] of plan.entries()) {
      const at = NOW - m.days * DAY - (plan.length - i) * 1000;
      const id = newMessageId(at);
      ids.push(id);
      // The parse event first: writers are independent and may land in any order.
      await store.appendEvents(id, [{ eventId: eventId(), event: parsed(at, m.subject, m.route) }]);
      await store.appendEvents(id, [{ eventId: eventId(), event: received(at, m.from, m.to) }], {
        bucket: 'mail',
        key: `raw/${id}.eml`,
      });
      if (i % 2 === 0)
        await store.appendEvents(id, [{ eventId: eventId(), event: deliveredAt(at, m.route) }]);
    }
  });

  after(() => t.close());

  it('keeps one record per message, whatever order its events come in, and each event once', async () => {
    const id = ids[0]!;
    const event = { eventId: eventId(), event: deliveredAt(NOW, 'billing') };
    await store.appendEvents(id, [event]);
    await store.appendEvents(id, [event]);
    const message = await store.getMessage(id);
    assert.ok(message);
    assert.deepEqual(
      message.timeline.map((e) => e.type),
      ['received', 'parsed', 'delivered', 'delivered'],
    );
    assert.deepEqual(message.raw, { bucket: 'mail', key: `raw/${id}.eml` });
    assert.equal(summarize(message).status, 'delivered');
    assert.equal(summarize(message).subject, 'Invoice 42 overdue');
  });

  it('lists newest first and pages with a cursor without gaps or repeats', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listMessages(query({ limit: 4, cursor }), new Date());
      assert.ok(page.items.length <= 4);
      seen.push(...page.items.map((m) => m.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    assert.deepEqual(seen, [...ids].reverse());
  });

  it('filters by recipient (any of them), sender, subject words, route, status and time', async () => {
    const list = async (fields: Partial<MessageQuery>) =>
      (await store.listMessages(query(fields), new Date())).items.map((m) => ids.indexOf(m.id));
    assert.deepEqual(await list({ recipient: 'sales@example.test' }), [3, 2]);
    assert.deepEqual(await list({ recipient: 'support@example.test' }), [5, 4, 2, 1, 0]);
    assert.deepEqual(await list({ sender: 'alice@sender.test' }), [5, 3, 0]);
    assert.deepEqual(await list({ sender: 'carol@sender.test' }), [4]);
    assert.deepEqual(await list({ sender: '<>' }), [1]);
    assert.deepEqual(await list({ q: 'invoice 42' }), [3, 0]);
    assert.deepEqual(await list({ route: 'billing' }), [5, 3, 0]);
    assert.deepEqual(await list({ status: 'parsed' }), [5, 3, 1]);
    assert.deepEqual(await list({ status: 'delivered', sender: 'alice@sender.test' }), [0]);
    assert.deepEqual(
      await list({
        since: new Date(NOW - 1.5 * DAY).toISOString(),
        until: new Date(NOW - 0.5 * DAY).toISOString(),
      }),
      [3, 2],
    );
  });

  it('refuses a cursor it did not make', async () => {
    await assert.rejects(store.listMessages(query({ cursor: 'bm90LWEtY3Vyc29y' }), new Date()), /cursor/);
  });

  it('treats a message past its retention as gone, though the local store never deletes it', async () => {
    // Written with the default retention, 30 days.
    const later = dynamoControlStore(t.client, TABLE, { now: () => new Date(NOW + 31 * DAY) });
    assert.equal(await later.getMessage(ids[0]!), undefined);
    assert.ok(await store.getMessage(ids[0]!));
    const page = await later.listMessages(query(), new Date(NOW + 31 * DAY));
    assert.deepEqual(page.items, []);
  });

  it('keeps one refusal per minute, client and recipient, and lists them newest first', async () => {
    const at = new Date(NOW).toISOString();
    const refusal = {
      at,
      recipient: 'nobody@example.test',
      mailFrom: 'spam@spam.test',
      remoteAddress: '198.51.100.9',
      reply: '550 5.1.1 Mailbox <nobody@example.test> does not exist',
    };
    await store.putRefusals([refusal, refusal, { ...refusal, recipient: 'other@example.test' }]);
    await store.putRefusals([refusal]);
    const since = new Date(NOW - 60_000).toISOString();
    const all = await store.listRefusals({ since, limit: 10 });
    assert.equal(all.items.length, 2);
    const one = await store.listRefusals({ since, recipient: 'NOBODY@example.test', limit: 10 });
    assert.deepEqual(one.items, [refusal]);
    const first = await store.listRefusals({ since, limit: 1 });
    assert.equal(first.items.length, 1);
    assert.ok(first.nextCursor);
    const second = await store.listRefusals({ since, limit: 1, cursor: first.nextCursor });
    assert.notDeepEqual(second.items, first.items);
  });

  it('lists the follow-up writes of any message since a time, oldest first, and none for a first try', async () => {
    const now = Date.now();
    const iso = (ago: number) => new Date(now - ago).toISOString();
    const job = { route: 'billing', endpoint: 'https://billing.test/', webhookId: 'msg_billing' };
    const attempt = (ago: number, n: number): TimelineEvent => ({
      at: iso(ago),
      type: 'attempt',
      ...job,
      attempt: n,
      status: 503,
      error: { class: 'http', text: 'HTTP 503' },
      durationMs: 5,
    });
    const write = (id: string, ...events: TimelineEvent[]) =>
      store.appendEvents(
        id,
        events.map((event) => ({ eventId: eventId(), event })),
      );
    // Received three hours ago and delivered at its first try: no activity then.
    const old = newMessageId(now - 3 * 3600_000);
    await write(old, received(now - 3 * 3600_000, 'ann@sender.test', ['support@example.test']));
    await write(old, { ...deliveredAt(now - 3 * 3600_000, 'billing') }, attempt(3 * 3600_000, 1));
    // Another, retried on its schedule 90 minutes ago (an earlier hour's partition), then dead-lettered.
    const retrying = newMessageId(now - 2 * 3600_000);
    await write(retrying, attempt(90 * 60_000, 2), {
      at: iso(90 * 60_000 - 1),
      type: 'retry_scheduled',
      ...job,
      attempt: 3,
      nextAttemptAt: iso(30_000),
    });
    await write(retrying, attempt(20_000, 3), {
      at: iso(19_999),
      type: 'dead_lettered',
      ...job,
      reason: 'exhausted',
      status: 503,
      error: 'HTTP 503',
    });
    // The old one retried by the API half a minute ago; written twice, as a writer that retries does.
    const retried: LogEntry = {
      eventId: eventId(),
      event: { at: iso(30_000), type: 'retried', by: 'cli', route: null, jobs: [job] },
    };
    await store.appendEvents(old, [retried]);
    await store.appendEvents(old, [retried]);

    const since = iso(4 * 3600_000);
    const all = await store.listActivity({ since, limit: 100 });
    assert.deepEqual(all.items, [
      { messageId: retrying, at: iso(90 * 60_000 - 1) },
      { messageId: old, at: iso(30_000) },
      { messageId: retrying, at: iso(19_999) },
    ]);
    assert.equal(all.nextCursor, null);
    assert.deepEqual(
      (await store.listActivity({ since: iso(25_000), limit: 100 })).items,
      all.items.slice(2),
    );
    assert.deepEqual((await store.listActivity({ since: iso(10_000), limit: 100 })).items, []);
    // One at a time, across hours and shards, without gaps or repeats.
    const paged: unknown[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listActivity({ since, limit: 1, ...(cursor ? { cursor } : {}) });
      paged.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    assert.deepEqual(paged, all.items);
    await assert.rejects(store.listActivity({ since, limit: 1, cursor: 'bm90IGEgY3Vyc29y' }), RangeError);
  });

  it('writes routes conditionally and records each change with the state after it', async () => {
    const start = `${'0'.repeat(10)}`;
    const now = new Date().toISOString();
    const route = { ...routeFields, id: 'tenant-a' };
    const created = await store.createRoute({ route, secrets: [], createdAt: now, updatedAt: now });
    assert.equal(created.revision, 1);
    await assert.rejects(
      store.createRoute({ route, secrets: [], createdAt: now, updatedAt: now }),
      StoreConflictError,
    );
    const changed = { ...route, endpoints: ['https://a.test/v2'] };
    const updated = await store.updateRoute({ ...created, route: changed }, 1);
    assert.equal(updated.revision, 2);
    // A writer that read revision 1 loses.
    await assert.rejects(store.updateRoute({ ...created, route }, 1), StoreConflictError);
    await assert.rejects(store.deleteRoute('tenant-a', 1), StoreConflictError);
    await store.deleteRoute('tenant-a', 2);
    assert.equal(await store.getRoute('tenant-a'), undefined);
    assert.deepEqual(await store.pageRoutes(10), { items: [], nextCursor: null });
    // Made again: the revision goes on, so a change feed reader orders it after the delete.
    const again = await store.createRoute({ route, secrets: [], createdAt: now, updatedAt: now });
    assert.equal(again.revision, 4);
    const changes = (await store.changesSince(start)).filter((c) => c.key === 'tenant-a');
    assert.deepEqual(
      changes.map((c) => [c.revision, c.kind === 'route' && c.route ? c.route.route.endpoints[0] : null]),
      [
        [1, 'https://a.test/hook'],
        [2, 'https://a.test/v2'],
        [3, null],
        [4, 'https://a.test/hook'],
      ],
    );
    const page = await store.pageRoutes(10);
    assert.deepEqual(
      page.items.map((r) => r.route.id),
      ['tenant-a'],
    );
  });

  it('lets one of several concurrent claims of a domain win, and never re-claims a verified one', async () => {
    const now = new Date();
    const claims = Array.from({ length: 5 }, (_, i) =>
      newDomainClaim('race.test', `key_${String(i).repeat(16)}`, now),
    );
    const results = await Promise.allSettled(claims.map((claim) => store.claimDomain(claim, now)));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof StoreConflictError);
    const holder = (await store.getDomain('race.test'))!;
    // A losing claim's token cannot verify it.
    const loser = claims.find((c) => c.token !== holder.token)!;
    await assert.rejects(
      store.markDomainVerified('race.test', loser.token, now.toISOString()),
      StoreConflictError,
    );
    const verified = await store.markDomainVerified('race.test', holder.token, now.toISOString());
    assert.equal(verified.status, 'verified');
    // Verified: no claim replaces it, even long after.
    const later = new Date(now.getTime() + 365 * DAY);
    await assert.rejects(
      store.claimDomain(newDomainClaim('race.test', 'key_x', later), later),
      StoreConflictError,
    );
  });

  it('replaces a pending claim only once it has expired', async () => {
    const now = new Date();
    const first = await store.claimDomain(newDomainClaim('slow.test', 'key_a', now), now);
    await assert.rejects(
      store.claimDomain(newDomainClaim('slow.test', 'key_b', now), now),
      StoreConflictError,
    );
    const later = new Date(now.getTime() + 8 * DAY);
    const second = await store.claimDomain(newDomainClaim('slow.test', 'key_b', later), later);
    assert.notEqual(second.token, first.token);
    assert.equal(second.revision, first.revision + 1);
    await assert.rejects(
      store.markDomainVerified('slow.test', first.token, later.toISOString()),
      StoreConflictError,
    );
    await store.deleteDomain('slow.test');
    await assert.rejects(store.deleteDomain('slow.test'), StoreConflictError);
    assert.equal(await store.getDomain('slow.test'), undefined);
  });

  it('stores keys by id and refuses to revoke one twice', async () => {
    const key = {
      id: 'key_0123456789abcdef',
      name: 'ci',
      scope: 'read' as const,
      hash: 'a'.repeat(64),
      createdAt: new Date().toISOString(),
    };
    await store.createKey(key);
    await assert.rejects(store.createKey(key), StoreConflictError);
    assert.deepEqual(await store.getKey(key.id), key);
    assert.ok((await store.listKeys()).some((k) => k.id === key.id));
    await store.deleteKey(key.id);
    await assert.rejects(store.deleteKey(key.id), StoreConflictError);
    assert.equal(await store.getKey(key.id), undefined);
  });

  it('keeps routes, domains, keys and the log across a restart of the local store', async () => {
    const now = new Date().toISOString();
    await store.createRoute({
      route: { ...routeFields, id: 'survivor' },
      secrets: [],
      createdAt: now,
      updatedAt: now,
    });
    await store.createKey({
      id: 'key_fedcba9876543210',
      name: 'keep',
      scope: 'full',
      hash: 'b'.repeat(64),
      createdAt: now,
    });
    const logged = (await store.listMessages(query(), new Date())).items.map((m) => m.id);
    assert.ok(logged.length >= ids.length);
    await t.restart();
    store = t.store;
    assert.ok(await store.getRoute('survivor'));
    assert.ok(await store.getKey('key_fedcba9876543210'));
    assert.equal((await store.getDomain('race.test'))?.status, 'verified');
    assert.deepEqual(
      (await store.listMessages(query(), new Date())).items.map((m) => m.id),
      logged,
    );
  });

  it("writes a retry's events and its activity with the grants deliver has in the synthesized app, and not without them", async () => {
    const queue = (name: string) => `http://127.0.0.1:1/000000000000/${name}`;
    const { deliver } = synthesizedRoles({
      resources: {
        bucket: 'mail',
        inboundQueueUrl: queue('inbound'),
        deliveryQueueUrl: queue('delivery'),
        deliveryDlqUrl: queue('delivery-dlq'),
        inboundDlqUrl: queue('inbound-dlq'),
      },
    });
    // The same role as it was before the activity items: the message partitions alone.
    const messagesOnly = deliver.map((statement) =>
      JSON.stringify(statement.Condition ?? {}).includes('M#*')
        ? { ...statement, Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['M#*'] } } }
        : statement,
    );
    const at = new Date().toISOString();
    const retry = (): LogEntry[] => [
      {
        eventId: eventId(),
        event: {
          at,
          type: 'retry_scheduled',
          route: 'billing',
          endpoint: 'https://billing.test/',
          webhookId: 'msg_billing',
          attempt: 2,
          nextAttemptAt: at,
        },
      },
    ];
    const granted = await t.behindFaultProxy({ proxy: { aws: { roles: { local: deliver } } } });
    const narrower = await t.behindFaultProxy({ proxy: { aws: { roles: { local: messagesOnly } } } });
    try {
      const id = newMessageId();
      await granted.store.appendEvents(id, retry());
      assert.deepEqual(granted.proxy.denials, []);
      const listed = await store.listActivity({ since: at, limit: 100 });
      assert.ok(listed.items.some((item) => item.messageId === id));
      await assert.rejects(narrower.store.appendEvents(newMessageId(), retry()), StoreRejectedError);
      assert.deepEqual(
        narrower.proxy.denials.map((denial) => denial.action),
        ['dynamodb:BatchWriteItem'],
      );
    } finally {
      await granted.close();
      await narrower.close();
    }
  });

  it('maps an AWS ConditionalCheckFailed answer to a conflict and lets other errors through', async () => {
    const { proxy, store: proxied, close } = await t.behindFaultProxy();
    try {
      const current = (await proxied.getRoute('survivor'))!;
      // AWS saw a concurrent writer that dynalite did not: the same exception shape.
      proxy.add({ ops: ['DynamoDB.UpdateItem'], action: { kind: 'conditionFailed' }, times: 1 });
      await assert.rejects(proxied.updateRoute(current, current.revision), StoreConflictError);
      proxy.add({ ops: ['DynamoDB.UpdateItem'], action: { kind: 'throttle' }, times: 1 });
      await assert.rejects(proxied.updateRoute(current, current.revision), (error: Error) => {
        assert.ok(!(error instanceof StoreConflictError));
        assert.equal(error.name, 'ThrottlingException');
        return true;
      });
      assert.equal((await proxied.updateRoute(current, current.revision)).revision, current.revision + 1);
    } finally {
      await close();
    }
  });
});

describe('refusals in the DynamoDB store (dynalite)', () => {
  let t: TestControlStore;
  before(async () => {
    t = await startTestControlStore();
  });
  after(() => t.close());

  /** A store on a table of its own: each test lists every refusal it holds. */
  const storeOn = async (table: string) => {
    await ensureControlTable(t.client, table);
    return dynamoControlStore(t.client, table);
  };
  const refusal = (at: number, client: string, recipient: string): Refusal => ({
    at: new Date(at).toISOString(),
    recipient,
    mailFrom: 'spam@spam.test',
    remoteAddress: client,
    reply: `550 5.1.1 Mailbox <${recipient}> does not exist`,
  });
  /** Every page of a listing, followed by its cursors; the items and how many pages it took. */
  const everyPage = async (store: ControlStore, query: Parameters<ControlStore['listRefusals']>[0]) => {
    const items: Refusal[] = [];
    let pages = 0;
    let cursor: string | undefined;
    do {
      const page = await store.listRefusals({ ...query, ...(cursor ? { cursor } : {}) });
      pages++;
      items.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return { items, pages };
  };

  it('lists refusals strictly newest first within a minute too, and pages through them without gaps or repeats', async () => {
    const store = await storeOn('refusal-order');
    const minute = Math.floor((Date.now() - 3600_000) / 60_000) * 60_000;
    // Twelve clients refused within one minute and six in the minute before: key (hash) order is not time order.
    const refusals = [
      ...Array.from({ length: 12 }, (_, i) =>
        refusal(minute + i * 4900 + 7, `198.51.100.${i}`, `r${i % 4}@a.test`),
      ),
      ...Array.from({ length: 6 }, (_, i) =>
        refusal(minute - 60_000 + i * 9000, `203.0.113.${i}`, `r${i % 4}@a.test`),
      ),
    ];
    const shuffled = refusals
      .map((r, i) => [(i * 7) % refusals.length, r] as const)
      .sort(([a], [b]) => a - b);
    for (let i = 0; i < shuffled.length; i += 5)
      await store.putRefusals(shuffled.slice(i, i + 5).map(([, r]) => r));
    const newestFirst = [...refusals].sort((a, b) => b.at.localeCompare(a.at));
    const since = new Date(minute - 60_000).toISOString();

    assert.deepEqual((await store.listRefusals({ since, limit: 100 })).items, newestFirst);
    assert.deepEqual((await everyPage(store, { since, limit: 5 })).items, newestFirst);
    assert.deepEqual(
      (await everyPage(store, { since, recipient: 'R1@a.test', limit: 1 })).items,
      newestFirst.filter((r) => r.recipient === 'r1@a.test'),
    );
    assert.deepEqual(
      (await store.listRefusals({ since: new Date(minute + 30_000).toISOString(), limit: 100 })).items,
      newestFirst.filter((r) => Date.parse(r.at) >= minute + 30_000),
    );
  });

  it('answers a recipient never refused after a bounded read, with a cursor that goes on to the older refusals', async () => {
    const store = await storeOn('refusal-budget');
    const now = Date.now();
    const wanted = refusal(now - 40 * 60_000, '192.0.2.1', 'wanted@a.test');
    // 1,500 refusals of others over the last 25 minutes: more than one request reads.
    const others = Array.from({ length: 1500 }, (_, i) =>
      refusal(now - 25 * 60_000 + i * 1000, `198.51.100.${i % 200}`, `n${i}@a.test`),
    );
    await store.putRefusals([wanted, ...others]);
    const since = new Date(now - 3600_000).toISOString();

    const first = await store.listRefusals({ since, recipient: 'wanted@a.test', limit: 50 });
    assert.deepEqual(first.items, []);
    assert.ok(first.nextCursor, 'a cursor to read on');
    const all = await everyPage(store, { since, recipient: 'wanted@a.test', limit: 50 });
    assert.deepEqual(all.items, [wanted]);
    assert.equal(all.pages, 2);
    const nobody = await everyPage(store, { since, recipient: 'nobody@a.test', limit: 50 });
    assert.deepEqual(nobody, { items: [], pages: 2 });
  });
});
