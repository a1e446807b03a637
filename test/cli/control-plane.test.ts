import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ulid } from 'ulid';
import {
  dynamoControlStore,
  findApiKey,
  type RetryPort,
  RouteSync,
  type TimelineEvent,
} from '../../core/control/index.ts';
import { newMessageId, parseConfig, SmtpError, webhookId } from '../../core/index.ts';
import { startLocalDynamo } from '../../dev/dynamo.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { startTestApi, type TestApi } from '../../harness/control-api.ts';
import { dynamoClient, TABLE } from '../../harness/control-store.ts';
import { createDnsZone, type ZoneRecords } from '../../harness/dns-zone.ts';
import { jsonLines, runCli, startCli } from './helpers.ts';

const HOOK = 'https://hooks.app.test/mail';

/** An HTTP proxy to `target` that counts the GETs of each path. */
async function countingProxy(target: string) {
  const gets = new Map<string, number>();
  const server = createHttpServer((incoming, outgoing) => {
    if (incoming.method === 'GET') gets.set(incoming.url!, (gets.get(incoming.url!) ?? 0) + 1);
    const upstream = httpRequest(
      new URL(incoming.url!, target),
      { method: incoming.method, headers: incoming.headers },
      (answer) => {
        outgoing.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(outgoing);
      },
    );
    upstream.on('error', () => outgoing.destroy());
    incoming.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    gets,
    close: () => server.close(),
  };
}

/** A message's timeline as the listener, parse and deliver write it: delivered, or dead-lettered. */
function timeline(
  id: string,
  fields: {
    at: Date;
    mailFrom: string;
    to: string;
    subject: string;
    route: string;
    fate: 'delivered' | 'failed';
  },
): TimelineEvent[] {
  const at = (ms: number) => new Date(fields.at.getTime() + ms).toISOString();
  const job = { route: fields.route, endpoint: HOOK, webhookId: webhookId(id, fields.route) };
  const received: TimelineEvent = {
    at: at(0),
    type: 'received',
    mailFrom: fields.mailFrom,
    rcptTo: [fields.to],
    size: 2048,
    remoteAddress: '203.0.113.9',
    helo: 'mx.sender.test',
    tls: true,
  };
  const parsed: TimelineEvent = {
    at: at(50),
    type: 'parsed',
    subject: fields.subject,
    from: fields.mailFrom,
    jobs: [job],
    unrouted: [],
    warnings: [],
  };
  if (fields.fate === 'delivered') {
    return [
      received,
      parsed,
      { at: at(90), type: 'attempt', ...job, attempt: 1, status: 204, error: null, durationMs: 31 },
      { at: at(91), type: 'delivered', ...job, status: 204 },
    ];
  }
  return [
    received,
    parsed,
    {
      at: at(90),
      type: 'attempt',
      ...job,
      attempt: 1,
      status: 400,
      error: { class: 'http', text: 'bad request' },
      durationMs: 12,
    },
    {
      at: at(91),
      type: 'dead_lettered',
      ...job,
      reason: 'permanent',
      status: 400,
      error: 'HTTP 400: bad request',
    },
  ];
}

/** A TCP proxy to the API that can cut every connection and refuse new ones, as a restarting API does. */
async function cuttableProxy(target: string) {
  const { port: targetPort } = new URL(target);
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = connect(Number(targetPort), '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket)).on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    set cut(value: boolean) {
      cut = value;
      if (value) for (const socket of sockets) socket.destroy();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe('mailbridge messages, routes, domains, keys and tail on the control plane API (dynalite over HTTP)', () => {
  let api: TestApi;
  let t: TestApi['store'];
  let admin: string;
  let adminId: string;
  let reader: string;
  let env: Record<string, string>;
  const zone: ZoneRecords = {};
  const dns = createDnsZone(zone);
  // The pipeline's retry port cannot run in this unit test (no queues): a stub that records what it
  // was asked and, as the pipeline's, answers no job (parse builds them).
  const retries: Parameters<RetryPort['retry']>[0][] = [];
  const ids: Record<string, string> = {};
  const receivedAt: Record<string, number> = {};

  const append = (id: string, events: TimelineEvent[]) =>
    t.store.appendEvents(
      id,
      events.map((event) => ({ eventId: newMessageId(), event })),
    );

  before(async () => {
    api = await startTestApi({
      resolver: dns.resolve,
      retry: {
        async retry(request) {
          retries.push(request);
          return [];
        },
      },
    });
    t = api.store;
    ({ secret: admin, id: adminId } = await api.key('admin', 'full'));
    reader = (await api.key('dashboard', 'read')).secret;
    env = { MAILBRIDGE_API_URL: `${api.server.url}/v1`, MAILBRIDGE_API_KEY: admin };

    // Two hours ago: one delivered; in the last minutes: two delivered, one dead-lettered.
    const now = Date.now();
    const seed: [string, number, Parameters<typeof timeline>[1]][] = [
      [
        'old',
        now - 2 * 3600_000,
        {
          at: new Date(0),
          mailFrom: 'ann@sender.test',
          to: 'support@example.test',
          subject: 'Old invoice',
          route: 'inbox',
          fate: 'delivered',
        },
      ],
      [
        'a',
        now - 3 * 60_000,
        {
          at: new Date(0),
          mailFrom: 'ann@sender.test',
          to: 'support@example.test',
          subject: 'Invoice 7 overdue',
          route: 'inbox',
          fate: 'delivered',
        },
      ],
      [
        'b',
        now - 2 * 60_000,
        {
          at: new Date(0),
          mailFrom: 'bo@vendor.test',
          to: 'sales@example.test',
          subject: 'Quote request',
          route: 'sales',
          fate: 'failed',
        },
      ],
      [
        'c',
        now - 60_000,
        {
          at: new Date(0),
          mailFrom: 'bo@vendor.test',
          to: 'support@example.test',
          subject: 'Invoice 8',
          route: 'inbox',
          fate: 'delivered',
        },
      ],
    ];
    for (const [name, time, fields] of seed) {
      // Not the monotonic factory: it never goes back in time, and these ids must carry their own.
      const id = ulid(time);
      ids[name] = id;
      receivedAt[name] = time;
      await t.store.appendEvents(
        id,
        timeline(id, { ...fields, at: new Date(time) }).map((event) => ({ eventId: newMessageId(), event })),
        { bucket: 'mail', key: `raw/${id}.eml` },
      );
    }
  });

  after(() => api?.close());

  describe('keys', () => {
    it('creates a key (secret shown once), lists it, and a revoked key gets a one-line 401', async () => {
      const created = await runCli(['keys', 'create', '--name', 'ci', '--scope', 'full', '--json'], { env });
      assert.equal(created.code, 0, created.stderr);
      const key = JSON.parse(created.stdout) as { id: string; secret: string; scope: string };
      assert.match(key.secret, /^mbk_/);
      assert.equal(key.scope, 'full');

      const listed = await runCli(['keys', 'list'], { env: { ...env, MAILBRIDGE_API_KEY: key.secret } });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^ID\s+NAME\s+SCOPE\s+CREATED$/m);
      assert.match(listed.stdout, new RegExp(`^${key.id}\\s+ci\\s+full\\s`, 'm'));
      assert.ok(!listed.stdout.includes(key.secret), 'a key is never shown again');

      const revoked = await runCli(['keys', 'revoke', key.id], { env });
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.equal(revoked.stdout, `key ${key.id} revoked\n`);
      const refused = await runCli(['messages', 'list'], { env: { ...env, MAILBRIDGE_API_KEY: key.secret } });
      assert.equal(refused.code, 1);
      assert.equal(
        refused.stderr,
        'mailbridge: the API refused the key (401): it is revoked or mistyped; set MAILBRIDGE_API_KEY to a valid key, or run mailbridge keys create\n',
      );
      const again = await runCli(['keys', 'revoke', key.id], { env });
      assert.equal(again.code, 1);
      assert.match(
        again.stderr,
        /^mailbridge: key \S+ does not exist \(404\): mailbridge keys list shows the keys\n$/,
      );
    });

    it('without any key says how to get one, and refuses a malformed one without printing it', async () => {
      const result = await runCli(['messages', 'list'], { env: { MAILBRIDGE_API_URL: api.server.url } });
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        'mailbridge: no API key: set MAILBRIDGE_API_KEY (or --api-key), or run mailbridge keys create\n',
      );
      // Two keys pasted on two lines, as a CI variable may hold them: refused before any request, not echoed.
      const pasted = `${admin}\n${admin}`;
      const malformed = await runCli(['messages', 'list'], {
        env: { MAILBRIDGE_API_URL: api.server.url, MAILBRIDGE_API_KEY: pasted },
      });
      assert.equal(malformed.code, 1);
      assert.equal(
        malformed.stderr,
        `mailbridge: the API key is not a mailbridge key (mbk_ and 43 letters, digits, - or _; this one has ${pasted.length} characters): check MAILBRIDGE_API_KEY or --api-key\n`,
      );
      assert.ok(!malformed.stderr.includes(admin.slice(4)), 'the key is not printed');
      const noUrl = await runCli(['routes', 'list'], { env: { MAILBRIDGE_API_KEY: admin } });
      assert.equal(noUrl.code, 1);
      assert.match(noUrl.stderr, /^mailbridge: no API URL: set MAILBRIDGE_API_URL/);
    });

    it('keys create --aws --table writes the first key of a deployment straight into its table', async () => {
      const created = await runCli(
        ['keys', 'create', '--aws', '--table', TABLE, '--name', 'first', '--scope', 'full', '--json'],
        {
          env: {
            AWS_ENDPOINT_URL: t.dynamo.endpoint,
            AWS_ACCESS_KEY_ID: 'local',
            AWS_SECRET_ACCESS_KEY: 'local',
            AWS_REGION: 'us-east-1',
          },
        },
      );
      assert.equal(created.code, 0, created.stderr);
      const key = JSON.parse(created.stdout) as { secret: string };
      // The API takes it.
      const listed = await runCli(['keys', 'list', '--json'], {
        env: { ...env, MAILBRIDGE_API_KEY: key.secret },
      });
      assert.equal(listed.code, 0, listed.stderr);
      assert.ok(
        (JSON.parse(listed.stdout) as { items: { name: string }[] }).items.some((k) => k.name === 'first'),
      );
      const noTable = await runCli(['keys', 'create', '--aws', '--name', 'x']);
      assert.equal(noTable.code, 2);
      assert.match(noTable.stderr, /--aws needs --table \(or MAILBRIDGE_CONTROL_TABLE\)/);
    });

    it('keys create without a key writes into the store of a stopped local runtime', async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-keys-'));
      try {
        const created = await runCli([
          'keys',
          'create',
          '--name',
          'local',
          '--scope',
          'read',
          '--json',
          '--data-dir',
          dataDir,
        ]);
        assert.equal(created.code, 0, created.stderr);
        const key = JSON.parse(created.stdout) as { id: string; secret: string };
        const dynamo = await startLocalDynamo({ dataDir: join(dataDir, 'control') });
        const client = dynamoClient(dynamo.endpoint);
        try {
          const found = await findApiKey(dynamoControlStore(client, TABLE), key.secret);
          assert.equal(found?.id, key.id);
          assert.equal(found?.scope, 'read');
        } finally {
          client.destroy();
          await dynamo.close();
        }
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });

  describe('routes', () => {
    it('adds an API route, lists it beside the read-only config route, removes it', async () => {
      const added = await runCli(
        [
          'routes',
          'add',
          '--id',
          'help',
          '--match',
          'help@example.test',
          '--match',
          'help-*@example.test',
          '--endpoint',
          HOOK,
        ],
        { env },
      );
      assert.equal(added.code, 0, added.stderr);
      assert.match(
        added.stdout,
        /^route help added: help@example\.test help-\*@example\.test → https:\/\/hooks\.app\.test\/mail\n/,
      );
      assert.match(added.stdout, /^signing secret \(shown only now\): whsec_\S+$/m);

      const listed = await runCli(['routes', 'list', '--json'], { env });
      assert.equal(listed.code, 0, listed.stderr);
      const routes = JSON.parse(listed.stdout) as { items: { id: string; source: string }[] };
      assert.deepEqual(
        routes.items.map((r) => [r.id, r.source]),
        [
          ['inbox', 'config'],
          ['help', 'api'],
        ],
      );
      const table = await runCli(['routes', 'list'], { env });
      assert.match(
        table.stdout,
        /^help\s+api\s+help@example\.test help-\*@example\.test\s+https:\/\/hooks\.app\.test\/mail$/m,
      );

      const configRoute = await runCli(['routes', 'rm', 'inbox'], { env });
      assert.equal(configRoute.code, 1);
      assert.equal(
        configRoute.stderr,
        'mailbridge: route inbox comes from the config file; change it there (409 read_only)\n',
      );
      const removed = await runCli(['routes', 'rm', 'help'], { env });
      assert.equal(removed.code, 0, removed.stderr);
      assert.equal(await t.store.getRoute('help'), undefined);
    });

    it('a read-only key adding a route gets a one-line 403 naming what to do', async () => {
      const result = await runCli(['routes', 'add', '--match', 'x@example.test', '--endpoint', HOOK], {
        env: { ...env, MAILBRIDGE_API_KEY: reader },
      });
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /^mailbridge: key key_[0-9a-f]{16} is read-only \(403\): this needs a full-scope key \(mailbridge keys create --scope full\)\n$/,
      );
    });

    it('a route without --id gets one; a bad route is refused naming the field', async () => {
      const [generated, bad] = await Promise.all([
        runCli(['routes', 'add', '--match', 'x@example.test', '--endpoint', HOOK, '--json'], { env }),
        runCli(['routes', 'add', '--match', 'x@example.test', '--endpoint', 'http://example.com/'], { env }),
      ]);
      assert.equal(generated.code, 0, generated.stderr);
      const route = JSON.parse(generated.stdout) as { id: string; source: string };
      assert.match(route.id, /^rt_[0-9a-z]{26}$/);
      assert.equal((await t.store.getRoute(route.id))?.route.match[0], 'x@example.test');
      assert.equal(bad.code, 1);
      assert.match(
        bad.stderr,
        /^mailbridge: body\.endpoints\[0\]: must be https.*\(400 validation_failed\)\n$/,
      );
    });
  });

  describe('routes check', () => {
    it('answers each address as the listener does, over the config and the API routes and domains', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'mailbridge-check-'));
      const document = {
        domains: ['example.test'],
        routes: [
          { id: 'inbox', match: ['*@example.test'], endpoints: [HOOK], secret: { value: 'whsec_dGVzdA==' } },
        ],
        listeners: [{ port: 0, mode: 'mx' }],
        health: { port: 0 },
      };
      const file = await writeConfigFile(dir, document);
      const add = async (args: string[]) => {
        const result = await runCli(args, { env });
        assert.equal(result.code, 0, result.stderr);
        return result;
      };
      try {
        await add([
          'routes',
          'add',
          '--id',
          'billing',
          '--match',
          'billing@example.test',
          '--endpoint',
          HOOK,
        ]);
        // Equally specific for team-a@: the older route takes it, though its id sorts last.
        await add(['routes', 'add', '--id', 'zeta', '--match', 'team-*@example.test', '--endpoint', HOOK]);
        await add(['routes', 'add', '--id', 'alpha', '--match', 'team-*@example.test', '--endpoint', HOOK]);
        await add(['routes', 'add', '--id', 'owned', '--match', '*@owned.test', '--endpoint', HOOK]);
        await add(['routes', 'add', '--id', 'claimed', '--match', '*@claimed.test', '--endpoint', HOOK]);
        const owned = JSON.parse((await add(['domains', 'add', 'owned.test', '--json'])).stdout) as {
          records: { type: string; name: string; value: string }[];
        };
        const txt = owned.records.find((record) => record.type === 'TXT')!;
        zone[txt.name] = { TXT: [[txt.value]] };
        await add(['domains', 'verify', 'owned.test']);
        await add(['domains', 'add', 'claimed.test']);

        const addresses = [
          'billing@example.test',
          'team-a@example.test',
          'anyone@example.test',
          'ann@owned.test',
          'ann@claimed.test',
          'ann@elsewhere.test',
        ];
        const checked = await runCli(['routes', 'check', '--config', file, ...addresses, '--json'], { env });
        assert.equal(checked.code, 1, 'two addresses are refused');
        const report = JSON.parse(checked.stdout) as {
          api: { url: string; domains: { name: string; status: string }[] } | null;
          routes: { id: string; source: string }[];
          addresses: { address: string; accepted: boolean; route?: string; reply?: string }[];
        };
        assert.deepEqual(
          report.addresses.map((result) => [result.address, result.route ?? result.reply]),
          [
            ['billing@example.test', 'billing'],
            ['team-a@example.test', 'zeta'],
            ['anyone@example.test', 'inbox'],
            ['ann@owned.test', 'owned'],
            ['ann@claimed.test', '550 5.7.1 Relaying denied for <ann@claimed.test>: domain not verified'],
            ['ann@elsewhere.test', '550 5.7.1 Relaying denied for <ann@elsewhere.test>'],
          ],
        );
        assert.deepEqual(report.api?.domains, [
          { name: 'claimed.test', status: 'pending' },
          { name: 'owned.test', status: 'verified' },
        ]);
        assert.ok(report.routes.some((route) => route.id === 'billing' && route.source === 'api'));

        // The listener's own index, loaded from the store, gives every address the same answer.
        const sync = new RouteSync(parseConfig(document, { source: 'test', runtime: 'local' }), t.store);
        await sync.reload();
        const listener = addresses.map((address) => {
          try {
            return sync.index.resolve(address).route.id;
          } catch (error) {
            if (!(error instanceof SmtpError)) throw error;
            return `${error.responseCode} ${error.message}`;
          }
        });
        assert.deepEqual(
          report.addresses.map((result) => result.route ?? result.reply),
          listener,
        );

        const text = await runCli(['routes', 'check', '--config', file, 'ann@claimed.test'], { env });
        assert.match(
          text.stdout,
          /^API http:\/\/127\.0\.0\.1:\d+: \d+ route\(s\), domains claimed\.test \(pending\), owned\.test \(verified\)$/m,
        );
        assert.match(
          text.stdout,
          /^ann@claimed\.test → 550 5\.7\.1 Relaying denied for <ann@claimed\.test>: domain not verified$/m,
        );
      } finally {
        for (const id of ['billing', 'zeta', 'alpha', 'owned', 'claimed'])
          await runCli(['routes', 'rm', id], { env });
        for (const name of ['owned.test', 'claimed.test']) await runCli(['domains', 'rm', name], { env });
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('domains', () => {
    it('adds a domain with the records to publish, verifies it against DNS, removes it', async () => {
      const added = await runCli(['domains', 'add', 'customer.test', '--json'], { env });
      assert.equal(added.code, 0, added.stderr);
      const domain = JSON.parse(added.stdout) as {
        status: string;
        records: { type: string; name: string; value: string }[];
      };
      assert.equal(domain.status, 'pending');
      const txt = domain.records.find((record) => record.type === 'TXT')!;

      const early = await runCli(['domains', 'verify', 'customer.test'], { env });
      assert.equal(early.code, 1);
      assert.match(
        early.stderr,
        /^mailbridge: TXT \S+ does not hold ".+" yet \(422 verification_failed\)\n$/,
      );

      zone[txt.name] = { TXT: [[txt.value]] };
      const verified = await runCli(['domains', 'verify', 'customer.test'], { env });
      assert.equal(verified.code, 0, verified.stderr);
      assert.equal(verified.stdout, 'domain customer.test verified\n');

      const listed = await runCli(['domains', 'list'], { env });
      assert.match(listed.stdout, /^example\.test\s+verified\s+config$/m);
      assert.match(listed.stdout, /^customer\.test\s+verified\s+api$/m);

      assert.equal((await runCli(['domains', 'rm', 'customer.test'], { env })).code, 0);
      const gone = await runCli(['domains', 'rm', 'customer.test'], { env });
      assert.equal(gone.code, 1);
      assert.equal(
        gone.stderr,
        'mailbridge: domain customer.test does not exist (404): mailbridge domains list shows the domains\n',
      );
    });

    it('prints the MX and TXT records for people', async () => {
      const added = await runCli(['domains', 'add', 'tenant.test'], { env });
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /^domain tenant\.test added, pending; publish these records/);
      assert.match(added.stdout, /^ {2}tenant\.test\s+MX\s+10 mx\.mailbridge\.test$/m);
      assert.match(added.stdout, /^ {2}\S+\.tenant\.test\s+TXT\s+\S+$/m);
    });
  });

  describe('messages', () => {
    it('lists newest first, a page at a time, the next page named under it', async () => {
      const first = await runCli(['messages', 'list', '--limit', '2', '--json'], { env });
      assert.equal(first.code, 0, first.stderr);
      const page = JSON.parse(first.stdout) as { items: { id: string }[]; nextCursor: string | null };
      assert.deepEqual(
        page.items.map((m) => m.id),
        [ids.c, ids.b],
      );
      assert.ok(page.nextCursor);
      const second = await runCli(
        ['messages', 'list', '--limit', '2', '--cursor', page.nextCursor, '--json'],
        { env },
      );
      assert.deepEqual(
        (JSON.parse(second.stdout) as { items: { id: string }[] }).items.map((m) => m.id),
        [ids.a, ids.old],
      );
      const human = await runCli(['messages', 'list', '--limit', '2'], { env });
      assert.match(human.stdout, /^ID\s+RECEIVED\s+STATUS\s+FROM\s+TO\s+SUBJECT$/m);
      assert.match(
        human.stdout,
        new RegExp(
          `^${ids.b}\\s+\\S+Z\\s+failed\\s+<bo@vendor\\.test>\\s+sales@example\\.test\\s+Quote request$`,
          'm',
        ),
      );
      assert.match(human.stdout, /^more: run again with --cursor \S+$/m);
    });

    it('filters by recipient, sender, subject words, status, route and time', async () => {
      const list = async (...args: string[]) => {
        const result = await runCli(['messages', 'list', '--json', ...args], { env });
        assert.equal(result.code, 0, result.stderr);
        return (JSON.parse(result.stdout) as { items: { id: string }[] }).items.map((m) => m.id);
      };
      const [to, from, subject, status, route, since, until] = await Promise.all([
        list('--to', 'sales@example.test'),
        list('--from', 'ann@sender.test'),
        list('--subject', 'invoice'),
        list('--status', 'failed'),
        list('--route', 'inbox', '--since', '1h'),
        list('--since', new Date(receivedAt.b! - 1000).toISOString()),
        list('--until', new Date(Date.now() - 3600_000).toISOString()),
      ]);
      assert.deepEqual(to, [ids.b]);
      assert.deepEqual(from, [ids.a, ids.old]);
      assert.deepEqual(subject, [ids.c, ids.a, ids.old]);
      assert.deepEqual(status, [ids.b]);
      assert.deepEqual(route, [ids.c, ids.a]);
      assert.deepEqual(since, [ids.c, ids.b]);
      assert.deepEqual(until, [ids.old]);
      const bad = await runCli(['messages', 'list', '--since', 'yesterday'], { env });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /expected an ISO 8601 time/);
    });

    it('shows a message with its timeline', async () => {
      const shown = await runCli(['messages', 'show', ids.b!], { env });
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`^message ${ids.b}: failed$`, 'm'));
      assert.match(shown.stdout, /^ {2}subject\s+Quote request$/m);
      const lines = shown.stdout.slice(shown.stdout.indexOf('timeline:')).split('\n').slice(1, -1);
      assert.deepEqual(
        lines.map((line) => line.trim().split(/\s+/)[1]),
        ['received', 'parsed', 'attempt', 'dead_lettered'],
      );
      assert.match(
        lines[0]!,
        /received\s+from <bo@vendor\.test> to sales@example\.test, 2\.0 KiB, client 203\.0\.113\.9 \(TLS\)$/,
      );
      assert.match(
        lines[2]!,
        /attempt\s+try 1 route sales → https:\/\/hooks\.app\.test\/mail: HTTP 400 http: bad request in 12 ms$/,
      );
      assert.match(
        lines[3]!,
        /dead_lettered\s+route sales → \S+: permanent, HTTP 400, HTTP 400: bad request; in the delivery DLQ$/,
      );
      const json = await runCli(['messages', 'show', ids.b!, '--json'], { env });
      const detail = JSON.parse(json.stdout) as { timeline: unknown[]; raw: { url: string } };
      assert.equal(detail.timeline.length, 4);
      assert.match(detail.raw.url, /raw\//);
      const missing = await runCli(['messages', 'show', newMessageId()], { env });
      assert.equal(missing.code, 1);
      assert.match(
        missing.stderr,
        /^mailbridge: message \S+ does not exist \(404\): mailbridge messages list shows the ids the log holds\n$/,
      );
    });

    it('retry and release send the message back to parse through the retry port, and the timeline says so', async () => {
      retries.length = 0;
      const retried = await runCli(['messages', 'retry', ids.a!, '--route', 'inbox'], { env });
      assert.equal(retried.code, 0, retried.stderr);
      assert.equal(
        retried.stdout,
        `queued message ${ids.a} again for route inbox: parse builds its deliveries by the routes in force; mailbridge messages show ${ids.a} lists them\n`,
      );
      const released = await runCli(['messages', 'release', ids.a!, '--json'], { env });
      assert.equal(released.code, 0, released.stderr);
      assert.deepEqual(JSON.parse(released.stdout), { messageId: ids.a, jobs: [] });
      assert.deepEqual(retries, [
        { messageId: ids.a, route: 'inbox', by: adminId },
        { messageId: ids.a, route: null, by: adminId, release: true },
      ]);
      const shown = await runCli(['messages', 'show', ids.a!], { env });
      assert.match(
        shown.stdout,
        new RegExp(
          `retried\\s+retried by ${adminId}, route inbox: sent back to parse, whose next "parsed" lists the jobs$`,
          'm',
        ),
      );
      assert.match(
        shown.stdout,
        new RegExp(
          `retried\\s+released by ${adminId}, every route: sent back to parse, whose next "parsed" lists the jobs$`,
          'm',
        ),
      );
      const wrongRoute = await runCli(['messages', 'retry', ids.a!, '--route', 'nope'], { env });
      assert.equal(wrongRoute.code, 1);
      assert.match(wrongRoute.stderr, /never went to route "nope" \(400 validation_failed\)/);
      // b went to route sales, which no config or store holds now: parse would queue nothing for it.
      const goneRoute = await runCli(['messages', 'retry', ids.b!, '--route', 'sales'], { env });
      assert.equal(goneRoute.code, 1);
      assert.match(goneRoute.stderr, /route "sales" no longer exists: retry every route .* \(409 conflict\)/);
      const readOnly = await runCli(['messages', 'retry', ids.a!], {
        env: { ...env, MAILBRIDGE_API_KEY: reader },
      });
      assert.equal(readOnly.code, 1);
      assert.match(readOnly.stderr, /read-only \(403\)/);
    });
  });

  describe('tail', () => {
    it('prints each delivery and failure appended to the log, whatever the endpoint, and not the past', async () => {
      const tail = await startCli(
        ['tail', '--json', '--count', '4', '--interval', '0.2', '--timeout', '30'],
        'following the message log',
        { env },
      );
      const id = newMessageId();
      const job = { route: 'sales', endpoint: HOOK, webhookId: webhookId(id, 'sales') };
      const start = Date.now();
      const at = (ms: number) => new Date(start + ms).toISOString();
      // Two routes: the dev inbox takes it at once, the other endpoint fails, is retried, then gone.
      const [received, parsed, attempt, delivered] = timeline(id, {
        at: new Date(start),
        mailFrom: 'cy@else.test',
        to: 'sales@example.test',
        subject: 'Live',
        route: 'inbox',
        fate: 'delivered',
      });
      if (parsed?.type !== 'parsed') throw new Error('the timeline starts received, parsed');
      await append(id, [received!, { ...parsed, jobs: [...parsed.jobs, job] }, attempt!, delivered!]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Later, another route's try fails and is retried, then dead-lettered.
      await append(id, [
        {
          at: at(1000),
          type: 'attempt',
          ...job,
          attempt: 1,
          status: 503,
          error: { class: 'http', text: 'HTTP 503' },
          durationMs: 8,
        },
        { at: at(1001), type: 'retry_scheduled', ...job, attempt: 2, nextAttemptAt: at(6001) },
      ]);
      await append(id, [
        {
          at: at(7000),
          type: 'attempt',
          ...job,
          attempt: 2,
          status: 410,
          error: { class: 'http', text: 'HTTP 410' },
          durationMs: 8,
        },
        { at: at(7001), type: 'dead_lettered', ...job, reason: 'gone', status: 410, error: 'HTTP 410' },
      ]);
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      const lines = jsonLines(result.stdout);
      assert.deepEqual(
        lines.map((line) => [line.kind, line.messageId, line.routeId ?? null]),
        [
          ['accepted', id, null],
          ['delivered', id, 'inbox'],
          ['retry', id, 'sales'],
          ['failed', id, 'sales'],
        ],
      );
      assert.deepEqual(
        { tries: lines[2]!.tries, status: lines[2]!.status, delaySeconds: lines[2]!.delaySeconds },
        { tries: 1, status: 503, delaySeconds: 5 },
      );
      assert.deepEqual(
        { tries: lines[3]!.tries, status: lines[3]!.status, reason: lines[3]!.reason },
        { tries: 2, status: 410, reason: 'gone' },
      );
    });

    it('follows a message received before it started once it is retried, and prints none of its past', async () => {
      // Received ten minutes ago; its first try failed and the next is scheduled.
      const waitingAt = Date.now() - 10 * 60_000;
      const waiting = ulid(waitingAt);
      const job = { route: 'sales', endpoint: HOOK, webhookId: webhookId(waiting, 'sales') };
      const [received, parsed] = timeline(waiting, {
        at: new Date(waitingAt),
        mailFrom: 'cy@else.test',
        to: 'sales@example.test',
        subject: 'Waiting',
        route: 'sales',
        fate: 'delivered',
      });
      const iso = (time: number) => new Date(time).toISOString();
      await append(waiting, [
        received!,
        parsed!,
        {
          at: iso(waitingAt + 90),
          type: 'attempt',
          ...job,
          attempt: 1,
          status: 503,
          error: null,
          durationMs: 9,
        },
        {
          at: iso(waitingAt + 91),
          type: 'retry_scheduled',
          ...job,
          attempt: 2,
          nextAttemptAt: iso(Date.now()),
        },
      ]);
      const tail = await startCli(
        ['tail', '--json', '--count', '2', '--interval', '0.2', '--timeout', '30'],
        'following the message log',
        { env },
      );
      // Its scheduled try now succeeds; and the message delivered two hours ago is retried through the API.
      const now = Date.now();
      await append(waiting, [
        { at: iso(now), type: 'attempt', ...job, attempt: 2, status: 204, error: null, durationMs: 9 },
        { at: iso(now + 1), type: 'delivered', ...job, status: 204 },
      ]);
      const again = { route: 'inbox', endpoint: HOOK, webhookId: webhookId(ids.old!, 'inbox') };
      await append(ids.old!, [
        { at: iso(now + 50), type: 'retried', by: adminId, route: null, jobs: [again] },
      ]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await append(ids.old!, [
        {
          at: iso(now + 600),
          type: 'attempt',
          ...again,
          attempt: 1,
          status: 200,
          error: null,
          durationMs: 9,
        },
        { at: iso(now + 601), type: 'delivered', ...again, status: 200 },
      ]);
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(
        jsonLines(result.stdout).map((line) => [
          line.kind,
          line.messageId,
          line.routeId,
          line.status,
          line.tries,
        ]),
        [
          ['delivered', waiting, 'sales', 204, 2],
          ['delivered', ids.old, 'inbox', 200, 1],
        ],
      );
    });

    it('reads a message waiting on its retry schedule once, and again when its next try is logged', async () => {
      const proxy = await countingProxy(api.server.url);
      try {
        const tail = await startCli(
          ['tail', '--json', '--count', '3', '--interval', '0.2', '--timeout', '30'],
          'following the message log',
          { env: { ...env, MAILBRIDGE_API_URL: `${proxy.url}/v1` } },
        );
        const id = newMessageId();
        const job = { route: 'sales', endpoint: HOOK, webhookId: webhookId(id, 'sales') };
        const [received, parsed] = timeline(id, {
          at: new Date(),
          mailFrom: 'cy@else.test',
          to: 'sales@example.test',
          subject: 'Later',
          route: 'sales',
          fate: 'delivered',
        });
        const iso = (ms: number) => new Date(Date.now() + ms).toISOString();
        await append(id, [
          received!,
          parsed!,
          { at: iso(1), type: 'attempt', ...job, attempt: 1, status: 503, error: null, durationMs: 9 },
          { at: iso(2), type: 'retry_scheduled', ...job, attempt: 2, nextAttemptAt: iso(60_000) },
        ]);
        // About ten polls while it waits.
        await new Promise((resolve) => setTimeout(resolve, 2000));
        const whileWaiting = proxy.gets.get(`/v1/messages/${id}`) ?? 0;
        await append(id, [
          { at: iso(3), type: 'attempt', ...job, attempt: 2, status: 204, error: null, durationMs: 9 },
          { at: iso(4), type: 'delivered', ...job, status: 204 },
        ]);
        const result = await tail.done;
        assert.equal(result.code, 0, result.stderr);
        // Once when it arrived (twice if its activity item landed a poll after it): not at each poll.
        assert.ok(whileWaiting >= 1 && whileWaiting <= 2, `read ${whileWaiting} times while waiting`);
        assert.deepEqual(
          jsonLines(result.stdout).map((line) => [line.kind, line.messageId, line.tries ?? null]),
          [
            ['accepted', id, null],
            ['retry', id, 1],
            ['delivered', id, 2],
          ],
        );
      } finally {
        proxy.close();
      }
    });

    it('polls on through dropped connections and prints what was logged meanwhile', async () => {
      const proxy = await cuttableProxy(api.server.url);
      try {
        const tail = await startCli(
          ['tail', '--json', '--count', '1', '--interval', '0.2', '--timeout', '60'],
          'following',
          {
            env: { ...env, MAILBRIDGE_API_URL: proxy.url },
          },
        );
        proxy.cut = true;
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const id = newMessageId();
        const [received] = timeline(id, {
          at: new Date(),
          mailFrom: 'eve@else.test',
          to: 'x@example.test',
          subject: 'Hi',
          route: 'inbox',
          fate: 'delivered',
        });
        await append(id, [received!]);
        proxy.cut = false;
        const result = await tail.done;
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(
          result.stdout
            .trim()
            .split('\n')
            .map((line) => (JSON.parse(line) as { kind: string; messageId: string }).messageId),
          [id],
        );
        assert.match(
          result.stderr,
          /^mailbridge: cannot reach the API at http:\/\/127\.0\.0\.1:\d+: .+; trying again$/m,
        );
        assert.match(result.stderr, /^mailbridge: the API answers again$/m);
      } finally {
        proxy.close();
      }
    });

    it('prints one line per event for people', async () => {
      const tail = await startCli(
        ['tail', '--count', '2', '--interval', '0.2', '--timeout', '30'],
        'following',
        { env },
      );
      const id = newMessageId();
      await append(
        id,
        timeline(id, {
          at: new Date(),
          mailFrom: 'dee@else.test',
          to: 'x@example.test',
          subject: 'Hi',
          route: 'inbox',
          fate: 'delivered',
        }),
      );
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      const [accepted, delivered] = result.stdout.trim().split('\n');
      assert.match(
        accepted!,
        new RegExp(
          `^\\S+T\\d\\d:\\d\\d:\\d\\d accepted  ${id} 2\\.0 KiB, 1 recipient\\(s\\) from 203\\.0\\.113\\.9$`,
        ),
      );
      assert.match(
        delivered!,
        new RegExp(`^\\S+T\\d\\d:\\d\\d:\\d\\d delivered ${id} → route inbox ${HOOK} HTTP 204 \\(try 1\\)$`),
      );
    });
  });

  describe('refusals', () => {
    const refusal = (ago: number, recipient: string, reply: string, remoteAddress = '198.51.100.7') => ({
      at: new Date(Date.now() - ago).toISOString(),
      recipient,
      mailFrom: 'x@spam.test',
      remoteAddress,
      reply,
    });

    it('lists refusals newest first, by recipient and time, a page at a time; for people a table', async () => {
      const old = refusal(
        2 * 3600_000,
        'old@example.test',
        '550 5.1.1 Mailbox <old@example.test> does not exist',
      );
      const unknown = refusal(
        180_000,
        'nobody@example.test',
        '550 5.1.1 Mailbox <nobody@example.test> does not exist',
      );
      // A message refused at the end of DATA: each of its recipients.
      const spam = [
        refusal(120_000, 'sales@example.test', '550 5.7.1 Message refused as spam (score 18)'),
        refusal(120_001, 'support@example.test', '550 5.7.1 Message refused as spam (score 18)'),
      ];
      const sender = refusal(60_000, '', '530 5.7.0 Authentication required');
      await t.store.putRefusals([old, unknown, ...spam, sender]);
      const list = async (...args: string[]) => {
        const result = await runCli(['refusals', 'list', '--json', ...args], { env });
        assert.equal(result.code, 0, result.stderr);
        return JSON.parse(result.stdout) as { items: { recipient: string }[]; nextCursor: string | null };
      };

      assert.deepEqual((await list()).items, [sender, ...spam, unknown]);
      assert.deepEqual((await list('--recipient', 'NOBODY@example.test')).items, [unknown]);
      assert.deepEqual((await list('--since', '3h')).items, [sender, ...spam, unknown, old]);
      const first = await list('--limit', '2');
      assert.deepEqual(first.items, [sender, spam[0]]);
      assert.ok(first.nextCursor);
      assert.deepEqual((await list('--limit', '2', '--cursor', first.nextCursor)).items, [spam[1], unknown]);

      const human = await runCli(['refusals', 'list', '--limit', '2'], { env });
      assert.equal(human.code, 0, human.stderr);
      const lines = human.stdout.trim().split('\n');
      assert.match(lines[0]!, /^REFUSED\s+CLIENT\s+FROM\s+TO\s+REPLY$/);
      assert.match(
        lines[1]!,
        /^\S+Z\s+198\.51\.100\.7\s+<x@spam\.test>\s+-\s+530 5\.7\.0 Authentication required$/,
      );
      assert.match(
        lines[2]!,
        /^\S+Z\s+198\.51\.100\.7\s+<x@spam\.test>\s+sales@example\.test\s+550 5\.7\.1 Message refused as spam \(score 18\)$/,
      );
      assert.match(lines[3]!, /^more: run again with --cursor \S+$/);
      const none = await runCli(['refusals', 'list', '--recipient', 'ann@example.test'], { env });
      assert.equal(none.stdout, 'no refusals\n');
    });

    it('tail prints each refusal as it happens, one JSON object or one line each', async () => {
      const json = await startCli(
        ['tail', '--json', '--count', '2', '--interval', '0.2', '--timeout', '30'],
        'following the message log',
        { env },
      );
      const rcpt = refusal(1, 'x@example.test', '550 5.1.1 Mailbox <x@example.test> does not exist');
      const data = refusal(
        0,
        'y@example.test',
        '552 5.3.4 Error: message exceeds fixed maximum message size 41943040',
        '203.0.113.4',
      );
      await t.store.putRefusals([rcpt]);
      await t.store.putRefusals([data]);
      const result = await json.done;
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(jsonLines(result.stdout), [
        { kind: 'refused', ...rcpt },
        { kind: 'refused', ...data },
      ]);

      const human = await startCli(
        ['tail', '--count', '1', '--interval', '0.2', '--timeout', '30'],
        'following',
        {
          env,
        },
      );
      await t.store.putRefusals([refusal(0, '', '530 5.7.0 Authentication required')]);
      const line = await human.done;
      assert.equal(line.code, 0, line.stderr);
      assert.match(
        line.stdout,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d refused {3}MAIL FROM <x@spam\.test> 530 5\.7\.0 Authentication required \(from 198\.51\.100\.7\)\n$/,
      );
    });
  });
});
