import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type LocalRuntime, startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { createDnsZone, type ZoneRecords } from '../../harness/dns-zone.ts';
import { ALL_PORTS_FREE, apiCaller, mxPort, sendMail as send } from '../../harness/local-runtime.ts';
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

/** Asks RCPT until the reply matches; how long it took. Fails after {@link IN_FORCE_MS}. */
async function rcptUntil(port: number, recipient: string, expected: RegExp): Promise<number> {
  const started = Date.now();
  let reply = '';
  while (Date.now() - started < IN_FORCE_MS) {
    reply = await rcpt(port, recipient);
    if (expected.test(reply)) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`RCPT TO:<${recipient}> still answers "${reply}" after ${IN_FORCE_MS} ms, not ${expected}`);
}

describe('control plane in the local runtime (npm start), over HTTP and SMTP', () => {
  let dir: string;
  let configFile: string;
  let runtime: LocalRuntime;
  let receiver: WebhookReceiver | undefined;
  const zone: ZoneRecords = {};
  const dns = createDnsZone(zone);
  const state: { readKey?: string; messageId?: string; routeSecret?: string } = {};

  const start = () =>
    startLocalRuntime({
      configFile,
      dataDir: dir,
      ports: ALL_PORTS_FREE,
      resolver: dns.resolve,
      pollWaitSeconds: 1,
    });
  const mx = () => mxPort(runtime);
  const call = apiCaller(() => runtime);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-control-runtime-'));
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
    });
    runtime = await start();
  });
  after(async () => {
    await runtime?.close();
    await receiver?.close();
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

  it('a route created through the API takes mail at RCPT within 10 s, no restart', async () => {
    assert.match(await rcpt(mx(), 'support@example.test'), /^550 5\.1\.1 /);
    receiver = await startWebhookReceiver({ secret: 'whsec_cGxhY2Vob2xkZXI=' });
    const created = await call('POST', '/v1/routes', {
      id: 'api-support',
      match: ['support@example.test'],
      endpoints: [receiver.url],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.source, 'api');
    assert.match(created.body.signingSecret, /^whsec_/);
    state.routeSecret = created.body.signingSecret;
    const took = await rcptUntil(mx(), 'support@example.test', /^250 /);
    assert.ok(took < IN_FORCE_MS, `${took} ms`);
  });

  it('mail to the API route is delivered, signed with the secret the API returned', async () => {
    const verifying = await startWebhookReceiver({ secret: state.routeSecret! });
    try {
      const update = await call('GET', '/v1/routes/api-support');
      const put = await fetch(`${runtime.api.url}/v1/routes/api-support`, {
        method: 'PUT',
        headers: {
          authorization: `Bearer ${runtime.api.key}`,
          'content-type': 'application/json',
          'if-match': `"${update.body.revision}"`,
        },
        body: JSON.stringify({
          id: 'api-support',
          match: ['support@example.test'],
          endpoints: [verifying.url],
        }),
      });
      assert.equal(put.status, 200, await put.text());
      await new Promise((resolve) => setTimeout(resolve, IN_FORCE_MS));
      await send(mx(), 'support@example.test');
      await verifying.waitForUnique(1, 20_000);
      assert.equal(verifying.invalid, 0);
    } finally {
      await verifying.close();
    }
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

  it('a domain added through the API is refused 550 5.7.1 until its TXT proof is verified, then takes mail', async () => {
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
    const route = await call('POST', '/v1/routes', {
      id: 'tenant-all',
      match: ['*@tenant.test'],
      endpoints: ['http://127.0.0.1:8025/webhooks'],
    });
    assert.equal(route.status, 201);
    await rcptUntil(mx(), 'help@tenant.test', /^550 5\.7\.1 .*domain not verified/);
    assert.equal((await call('POST', '/v1/domains/tenant.test/verify')).status, 422);

    const txt = records.find((record) => record.type === 'TXT')!;
    zone[txt.name] = { TXT: [[txt.value]] };
    const verified = await call('POST', '/v1/domains/tenant.test/verify');
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal(verified.body.status, 'verified');
    await rcptUntil(mx(), 'help@tenant.test', /^250 /);
    await send(mx(), 'help@tenant.test');
  });

  it('a route deleted through the API gets 550 5.1.1 within 10 s', async () => {
    assert.equal((await call('DELETE', '/v1/routes/api-support')).status, 204);
    const took = await rcptUntil(mx(), 'support@example.test', /^550 5\.1\.1 /);
    assert.ok(took < IN_FORCE_MS, `${took} ms`);
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
