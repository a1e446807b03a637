import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalRuntime, startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { noDns } from '../../harness/dns-zone.ts';
import {
  ALL_PORTS_FREE,
  apiCaller,
  mxPort,
  sendMail as send,
  startListenerTask,
} from '../../harness/local-runtime.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { RawSmtp } from '../listener/helpers.ts';

/** The promise: a change through the API is in force at RCPT within 10 s. */
const IN_FORCE_MS = 10_000;

/** The reply to RCPT TO `recipient` in a fresh session on the MX port. */
async function rcpt(port: number, recipient: string): Promise<string> {
  const client = await RawSmtp.open(port);
  try {
    await client.command('EHLO client.test');
    await client.command('MAIL FROM:<ann@sender.test>');
    return await client.command(`RCPT TO:<${recipient}>`);
  } finally {
    client.close();
  }
}

/**
 * Asks RCPT until the reply matches; how long after `since` (the change, by default now) it did.
 * Fails once {@link IN_FORCE_MS} have passed since then.
 */
async function rcptUntil(
  port: number,
  recipient: string,
  expected: RegExp,
  since = Date.now(),
): Promise<number> {
  let reply = '';
  while (Date.now() - since < IN_FORCE_MS) {
    reply = await rcpt(port, recipient);
    if (expected.test(reply)) return Date.now() - since;
    await sleep(200);
  }
  assert.fail(
    `RCPT TO:<${recipient}> still answers "${reply}" ${IN_FORCE_MS} ms after the change, not ${expected}`,
  );
}

/**
 * Sends to `recipient` until it is taken. Only `550 5.1.1` (the route not in force yet) is tried
 * again: a sending MTA would not, but the test must, to find the moment. The message id, and how
 * long after `since` (the change) it was taken; fails once {@link IN_FORCE_MS} have passed.
 */
async function sendWhenInForce(port: number, recipient: string, since: number) {
  let refusal = '';
  while (Date.now() - since < IN_FORCE_MS) {
    try {
      return { id: await send(port, recipient), took: Date.now() - since };
    } catch (error) {
      refusal = (error as { response?: string }).response ?? '';
      if (!/^550 5\.1\.1 /.test(refusal)) throw error;
    }
    await sleep(200);
  }
  assert.fail(`mail to <${recipient}> still refused "${refusal}" ${IN_FORCE_MS} ms after the change`);
}

describe('control plane in the local runtime (npm start), over HTTP and SMTP', () => {
  let dir: string;
  let configFile: string;
  let runtime: LocalRuntime;
  const receivers: WebhookReceiver[] = [];
  const state: { readKey?: string; messageId?: string } = {};

  const start = () =>
    startLocalRuntime({
      configFile,
      dataDir: dir,
      ports: ALL_PORTS_FREE,
      resolver: noDns,
      pollWaitSeconds: 1,
    });
  const mx = () => mxPort(runtime);
  const call = apiCaller(() => runtime);

  /**
   * Creates an API route delivering to a real receiver that verifies with the signing secret the
   * API returns once. That secret comes with the route, so the route is made with a placeholder
   * endpoint and moved to the receiver at once, before any mail to it.
   */
  async function routeToReceiver(route: { id: string; match: string[] }): Promise<WebhookReceiver> {
    const created = await call('POST', '/v1/routes', {
      ...route,
      endpoints: ['http://127.0.0.1:9/placeholder'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.source, 'api');
    const receiver = await startWebhookReceiver({ secret: created.body.signingSecret });
    receivers.push(receiver);
    const moved = await call('PUT', `/v1/routes/${route.id}`, { ...route, endpoints: [receiver.url] });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    return receiver;
  }

  /** The id of the one webhook `receiver` got, once it got it; its signature verified. */
  async function delivered(receiver: WebhookReceiver): Promise<string> {
    await receiver.waitForUnique(1, 20_000);
    assert.equal(receiver.invalid, 0, 'the signature verifies with the secret the API returned');
    return (receiver.received[0]!.payload as { id: string }).id;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-control-runtime-'));
    // The local DNS zone a user edits to prove a domain; empty until then.
    await writeFile(join(dir, 'zone.yaml'), '{}\n');
    configFile = await writeConfigFile(dir, {
      hostname: 'mx.local.test',
      domains: ['example.test'],
      routes: [
        {
          id: 'known',
          match: ['known@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: 'whsec_a25vd24=' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      dev: { dnsZone: 'zone.yaml' },
    });
    runtime = await start();
  });
  after(async () => {
    await runtime?.close();
    await Promise.all(receivers.map((receiver) => receiver.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 401 without a valid key and 403 when a read-only key writes', async () => {
    assert.equal((await call('GET', '/v1/routes', undefined, null)).status, 401);
    assert.equal((await call('GET', '/v1/routes', undefined, `mbk_${'A'.repeat(43)}`)).status, 401);
    const created = await call('POST', '/v1/keys', { name: 'dashboard', scope: 'read' });
    assert.equal(created.status, 201);
    state.readKey = created.body.secret;
    assert.equal((await call('GET', '/v1/routes', undefined, state.readKey)).status, 200);
    const write = await call(
      'POST',
      '/v1/routes',
      { match: ['x@example.test'], endpoints: ['http://127.0.0.1:1/'] },
      state.readKey,
    );
    assert.equal(write.status, 403);
  });

  // First: the log keeps at most 10 refusals per client and minute, and the tests below make many.
  it('a refused recipient appears in GET /v1/refusals with the reply it got', async () => {
    assert.match(await rcpt(mx(), 'nobody@example.test'), /^550 5\.1\.1 /);
    assert.match(await rcpt(mx(), 'someone@elsewhere.test'), /^550 5\.7\.1 /);
    let items: { recipient: string; reply: string; mailFrom: string; remoteAddress: string }[] = [];
    for (let tries = 0; tries < 50 && items.length < 2; tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      items = (await call('GET', '/v1/refusals', undefined, state.readKey)).body.items;
    }
    const nobody = items.find((item) => item.recipient === 'nobody@example.test');
    assert.match(nobody?.reply ?? '', /^550 5\.1\.1 Mailbox <nobody@example\.test> does not exist$/);
    assert.equal(nobody?.mailFrom, 'ann@sender.test');
    assert.equal(nobody?.remoteAddress, '127.0.0.1');
    const relay = items.find((item) => item.recipient === 'someone@elsewhere.test');
    assert.match(relay?.reply ?? '', /^550 5\.7\.1 Relaying denied/);
  });

  it('keeps the dev key in <data>/control/dev-key and the runtime record points at it', async () => {
    assert.equal((await readFile(join(dir, 'control', 'dev-key'), 'utf8')).trim(), runtime.api.key);
    const record = JSON.parse(await readFile(join(dir, 'runtime.json'), 'utf8'));
    assert.deepEqual(record.api, { url: runtime.api.url, keyFile: join(dir, 'control', 'dev-key') });
  });

  it('a route created through the API takes mail within 10 s, no restart, signed with the secret the API returned once', async (t) => {
    assert.match(await rcpt(mx(), 'support@example.test'), /^550 5\.1\.1 /);
    const since = Date.now();
    const support = await routeToReceiver({ id: 'api-support', match: ['support@example.test'] });
    const { id, took } = await sendWhenInForce(mx(), 'support@example.test', since);
    t.diagnostic(`first 250 ${took} ms after the create`);
    assert.ok(took < IN_FORCE_MS, `${took} ms`);
    assert.equal(await delivered(support), id);
  });

  it('logs each accepted message: GET /v1/messages/{id} shows its received event', async () => {
    state.messageId = await send(mx(), 'known@example.test');
    let message: { status: number; body: { timeline: { type: string; rcptTo?: string[] }[] } } | undefined;
    for (let tries = 0; tries < 50; tries++) {
      message = await call('GET', `/v1/messages/${state.messageId}`);
      if (message.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(message?.status, 200, JSON.stringify(message?.body));
    const received = message!.body.timeline.find((event) => event.type === 'received');
    assert.deepEqual(received?.rcptTo, ['known@example.test']);
  });

  it('a domain added through the API is refused 550 5.7.1 until its TXT proof is in the local zone and verified, then takes mail', async () => {
    const added = await call('POST', '/v1/domains', { name: 'tenant.test' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const records = added.body.records as { type: string; name: string; value: string }[];
    assert.deepEqual(
      records.find((record) => record.type === 'MX'),
      {
        type: 'MX',
        name: 'tenant.test',
        value: '10 mx.local.test',
      },
    );
    const tenant = await routeToReceiver({ id: 'tenant-all', match: ['*@tenant.test'] });
    await rcptUntil(mx(), 'help@tenant.test', /^550 5\.7\.1 .*domain not verified/);
    assert.equal((await call('POST', '/v1/domains/tenant.test/verify')).status, 422);

    // As the user does: the TXT record into the zone file of dev.dnsZone, no restart.
    const txt = records.find((record) => record.type === 'TXT')!;
    await writeFile(join(dir, 'zone.yaml'), JSON.stringify({ [txt.name]: { TXT: [txt.value] } }));
    const verified = await call('POST', '/v1/domains/tenant.test/verify');
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal(verified.body.status, 'verified');
    await rcptUntil(mx(), 'help@tenant.test', /^250 /);
    const id = await send(mx(), 'help@tenant.test');
    assert.equal(await delivered(tenant), id);
  });

  it('a route deleted through the API gets 550 5.1.1 within 10 s', async (t) => {
    const since = Date.now();
    assert.equal((await call('DELETE', '/v1/routes/api-support')).status, 204);
    const took = await rcptUntil(mx(), 'support@example.test', /^550 5\.1\.1 /, since);
    t.diagnostic(`550 5.1.1 ${took} ms after the delete`);
  });

  it('a restart keeps routes, domains, keys, the dev key and the message log', async () => {
    const key = runtime.api.key;
    await runtime.close();
    runtime = await start();
    assert.equal(runtime.api.key, key);
    // In force at once: the listener loads every route and domain before it listens.
    assert.match(await rcpt(mx(), 'help@tenant.test'), /^250 /);
    assert.match(await rcpt(mx(), 'support@example.test'), /^550 5\.1\.1 /);
    const routes = (await call('GET', '/v1/routes')).body.items.map((r: { id: string }) => r.id);
    assert.deepEqual(routes.sort(), ['known', 'tenant-all']);
    const domain = await call('GET', '/v1/domains/tenant.test');
    assert.equal(domain.body.status, 'verified');
    const keys = (await call('GET', '/v1/keys')).body.items.map((k: { name: string }) => k.name);
    assert.deepEqual(keys.sort(), ['dashboard', 'dev']);
    const message = await call('GET', `/v1/messages/${state.messageId}`, undefined, state.readKey);
    assert.equal(message.status, 200);
    assert.ok(message.body.timeline.some((event: { type: string }) => event.type === 'received'));
  });
});

describe('control plane with several listener tasks on one store, as in AWS', () => {
  let dir: string;
  let runtime: LocalRuntime;
  let tasks: Awaited<ReturnType<typeof startListenerTask>>[] = [];
  const call = apiCaller(() => runtime);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-control-tasks-'));
    const configFile = await writeConfigFile(dir, {
      hostname: 'mx.local.test',
      domains: ['example.test'],
      // A config needs one route; this one takes no mail here.
      routes: [
        {
          id: 'known',
          match: ['known@example.test'],
          endpoints: ['http://127.0.0.1:9/known'],
          secret: { value: 'whsec_a25vd24=' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
    });
    runtime = await startLocalRuntime({
      configFile,
      ports: ALL_PORTS_FREE,
      resolver: noDns,
      pollWaitSeconds: 1,
    });
    tasks = await Promise.all([startListenerTask(runtime), startListenerTask(runtime)]);
  });
  after(async () => {
    await Promise.all(tasks.map((task) => task.close()));
    await runtime?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a route created, then deleted, through the API once is in force at RCPT on every listener task within 10 s', async (t) => {
    const ports = [runtime, ...tasks].map(mxPort);
    for (const port of ports) assert.match(await rcpt(port, 'orders@example.test'), /^550 5\.1\.1 /);

    let since = Date.now();
    const route = { id: 'orders', match: ['orders@example.test'], endpoints: ['http://127.0.0.1:9/orders'] };
    assert.equal((await call('POST', '/v1/routes', route)).status, 201);
    const taken = await Promise.all(
      ports.map((port) => rcptUntil(port, 'orders@example.test', /^250 /, since)),
    );
    t.diagnostic(`250 on each listener ${taken.join(', ')} ms after the create`);

    since = Date.now();
    assert.equal((await call('DELETE', '/v1/routes/orders')).status, 204);
    const refused = await Promise.all(
      ports.map((port) => rcptUntil(port, 'orders@example.test', /^550 5\.1\.1 /, since)),
    );
    t.diagnostic(`550 5.1.1 on each listener ${refused.join(', ')} ms after the delete`);
  });
});
