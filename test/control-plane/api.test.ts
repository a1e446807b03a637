import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { S3Client } from '@aws-sdk/client-s3';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Webhook } from 'standardwebhooks';
import { monotonicFactory } from 'ulid';
import { s3Presigner } from '../../core/aws/index.ts';
import { MAX_API_REGEXES } from '../../core/control/api.ts';
import {
  createApiHandler,
  localSigningSecretStore,
  newApiKey,
  OPENAPI_DOCUMENT_PATH,
  pipelineRoute,
  type RetryPort,
  type TimelineEvent,
} from '../../core/control/index.ts';
import { newMessageId, parseConfigText, resolveSecret, signWebhook } from '../../core/index.ts';
import { type ApiServer, startApiServer } from '../../dev/api-server.ts';
import { startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';
import { createDnsZone, type ZoneRecords } from '../../harness/dns-zone.ts';

const config = parseConfigText(
  `
domains: [example.test, '*.corp.test']
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes: [{ id: inbox, match: ['*@example.test'], endpoints: ['https://inbox.test/'], secret: { env: S } }]
`,
  { source: 'test', runtime: 'local' },
);

const document = JSON.parse(readFileSync(new URL(`../../${OPENAPI_DOCUMENT_PATH}`, import.meta.url), 'utf8'));
// ajv-formats checks `date-time` (RFC 3339) for real; `formats: { 'date-time': true }` accepts anything.
const ajv = addFormats.default(new Ajv2020({ allErrors: true, strict: false }));

/** Checks a response body against the published document's schema for its operation and status. */
function conforms(method: string, template: string, status: number, body: unknown): void {
  const schema =
    document.paths[template]?.[method.toLowerCase()]?.responses?.[status]?.content?.['application/json']
      ?.schema;
  assert.ok(schema, `${method} ${template} ${status} is documented`);
  const resolved = schema.$ref ? document.components.schemas.Error : schema;
  const validate = ajv.compile(resolved);
  assert.ok(validate(body), `${method} ${template} ${status}: ${ajv.errorsText(validate.errors)}`);
}

const eventId = monotonicFactory();

/** Metrics that remember what was counted (tests publish none). */
class CountedMetrics extends Metrics {
  readonly counted: string[] = [];
  override addMetric(...args: Parameters<Metrics['addMetric']>): this {
    this.counted.push(args[0]);
    return super.addMetric(...args);
  }
}

describe('control plane API over HTTP (dynalite)', () => {
  let t: TestControlStore;
  let api: ApiServer;
  let admin: string;
  let adminId: string;
  let reader: string;
  const zone: ZoneRecords = {};
  const dns = createDnsZone(zone);
  let dnsDown = false;
  const retries: { messageId: string; route: string | null; by: string }[] = [];

  const call = async (
    method: string,
    path: string,
    options: { key?: string | null; body?: unknown; headers?: Record<string, string> } = {},
  ) => {
    const key = options.key === undefined ? admin : options.key;
    const response = await fetch(`${api.url}${path}`, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...options.headers,
      },
      body:
        options.body === undefined
          ? undefined
          : typeof options.body === 'string'
            ? options.body
            : JSON.stringify(options.body),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    t = await startTestControlStore();
    const full = newApiKey('admin', 'full', new Date());
    const read = newApiKey('dashboard', 'read', new Date());
    await t.store.createKey(full.stored);
    await t.store.createKey(read.stored);
    admin = full.secret;
    adminId = full.stored.id;
    reader = read.secret;
    // As the pipeline's port: the message goes back to parse, which alone knows the jobs.
    const retry: RetryPort = {
      async retry(request) {
        retries.push(request);
        return [];
      },
    };
    const s3 = new S3Client({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      forcePathStyle: true,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const presign = s3Presigner(s3, { expiresInSeconds: 300 });
    const handler = createApiHandler({
      store: t.store,
      config,
      runtime: 'local',
      mxHost: 'mx.mailbridge.test',
      resolver: async (name, rrtype) => {
        if (dnsDown) throw Object.assign(new Error('queryTxt ETIMEOUT'), { code: 'ETIMEOUT' });
        return dns.resolve(name, rrtype);
      },
      secrets: localSigningSecretStore,
      retry,
      presign: (raw) => presign(raw.bucket, raw.key),
    });
    api = await startApiServer(handler);
  });

  after(async () => {
    await api.close();
    await t.close();
  });

  describe('access', () => {
    it('answers 401 without a valid key, and never says whether a key exists', async () => {
      for (const key of [null, 'mbk_nope', `mbk_${'A'.repeat(43)}`]) {
        const answer = await call('GET', '/v1/messages', { key });
        assert.equal(answer.status, 401);
        assert.equal(answer.body.error.code, 'unauthorized');
        assert.match(answer.headers.get('www-authenticate') ?? '', /^Bearer/);
        conforms('GET', '/v1/messages', 401, answer.body);
      }
    });

    it('lets a read-only key read and answers 403 when it writes', async () => {
      assert.equal((await call('GET', '/v1/routes', { key: reader })).status, 200);
      const denied = await call('POST', '/v1/keys', { key: reader, body: { name: 'x', scope: 'full' } });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.error.code, 'forbidden');
      assert.equal((await call('DELETE', '/v1/routes/inbox', { key: reader })).status, 403);
    });

    it('makes keys whose secret is shown once, and revokes them at once', async () => {
      const created = await call('POST', '/v1/keys', { body: { name: 'ci', scope: 'full' } });
      assert.equal(created.status, 201);
      conforms('POST', '/v1/keys', 201, created.body);
      assert.match(created.body.secret, /^mbk_[A-Za-z0-9_-]{43}$/);
      const listed = await call('GET', '/v1/keys');
      conforms('GET', '/v1/keys', 200, listed.body);
      const entry = listed.body.items.find((k: { id: string }) => k.id === created.body.id);
      assert.deepEqual(Object.keys(entry).sort(), ['createdAt', 'id', 'name', 'scope']);
      assert.equal((await call('GET', '/v1/keys', { key: created.body.secret })).status, 200);
      assert.equal((await call('DELETE', `/v1/keys/${created.body.id}`)).status, 204);
      assert.equal((await call('GET', '/v1/keys', { key: created.body.secret })).status, 401);
      assert.equal((await call('DELETE', `/v1/keys/${created.body.id}`)).status, 404);
    });

    it('answers 404 for an unknown path and 405 with Allow for a wrong method', async () => {
      assert.equal((await call('GET', '/v1/nothing')).status, 404);
      const wrong = await call('PATCH', '/v1/routes');
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.get('allow'), 'GET, POST');
    });
  });

  describe('routes', () => {
    const body = { id: 'tenant-a', match: ['*@a.corp.test'], endpoints: ['http://127.0.0.1:9999/hook'] };

    it('lists config routes read-only and makes API routes with a secret shown once', async () => {
      const created = await call('POST', '/v1/routes', { body });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      conforms('POST', '/v1/routes', 201, created.body);
      assert.match(created.body.signingSecret, /^whsec_/);
      assert.equal(created.body.source, 'api');
      assert.equal(created.body.timeout, 15);
      assert.equal(created.headers.get('location'), '/v1/routes/tenant-a');
      const fetched = await call('GET', '/v1/routes/tenant-a');
      conforms('GET', '/v1/routes/{id}', 200, fetched.body);
      assert.equal(fetched.body.signingSecret, undefined);
      assert.equal(fetched.headers.get('etag'), '"1"');
      assert.ok(!JSON.stringify(fetched.body).includes(created.body.signingSecret));
      const listed = await call('GET', '/v1/routes');
      conforms('GET', '/v1/routes', 200, listed.body);
      assert.deepEqual(
        listed.body.items.map((r: { id: string; source: string }) => [r.id, r.source]),
        [
          ['inbox', 'config'],
          ['tenant-a', 'api'],
        ],
      );
      // The delivery side signs with it: a receiver holding the secret verifies.
      const stored = (await t.store.getRoute('tenant-a'))!;
      const secrets = await Promise.all(
        pipelineRoute(stored, new Date()).secret.map((ref) => resolveSecret(ref, 'route')),
      );
      const payload = '{"type":"email.received"}';
      const headers = signWebhook('msg_1', Math.floor(Date.now() / 1000), payload, secrets);
      assert.ok(new Webhook(created.body.signingSecret).verify(payload, { ...headers }));
    });

    it('refuses to change config routes, duplicate ids and bad fields, naming the field', async () => {
      assert.equal((await call('PUT', '/v1/routes/inbox', { body })).body.error.code, 'read_only');
      assert.equal((await call('DELETE', '/v1/routes/inbox')).status, 409);
      assert.equal((await call('POST', '/v1/routes', { body: { ...body, id: 'inbox' } })).status, 409);
      assert.equal((await call('POST', '/v1/routes', { body })).status, 409);
      const http = await call('POST', '/v1/routes', {
        body: { ...body, id: 'x', endpoints: ['http://example.com/'] },
      });
      assert.equal(http.status, 400);
      assert.match(http.body.error.message, /^body\.endpoints\[0\]: must be https/);
      conforms('POST', '/v1/routes', 400, http.body);
      const secret = await call('POST', '/v1/routes', {
        body: { ...body, id: 'y', secret: { value: 'whsec_x' } },
      });
      assert.equal(secret.status, 400);
      assert.match(secret.body.error.message, /secret/);
      const missing = await call('POST', '/v1/routes', { body: { id: 'z', endpoints: ['https://a.test/'] } });
      assert.match(missing.body.error.message, /^body\.match: /);
      assert.match(
        (await call('POST', '/v1/routes', { body: '{nope' })).body.error.message,
        /^body: not valid JSON/,
      );
    });

    it('replaces a route only at the revision the client read (If-Match), else 409', async () => {
      const changed = { ...body, endpoints: ['http://127.0.0.1:9999/v2'] };
      const first = await call('PUT', '/v1/routes/tenant-a', {
        body: changed,
        headers: { 'if-match': '"1"' },
      });
      assert.equal(first.status, 200);
      assert.equal(first.body.revision, 2);
      assert.deepEqual(first.body.endpoints, ['http://127.0.0.1:9999/v2']);
      const stale = await call('PUT', '/v1/routes/tenant-a', { body, headers: { 'if-match': '"1"' } });
      assert.equal(stale.status, 409);
      assert.equal(stale.body.error.code, 'conflict');
      assert.equal((await call('PUT', '/v1/routes/nope', { body })).status, 404);
    });

    it('rotates the signing secret: old and new both sign during the overlap', async () => {
      const rotated = await call('POST', '/v1/routes/tenant-a/secrets', { body: { overlapSeconds: 3600 } });
      assert.equal(rotated.status, 201);
      conforms('POST', '/v1/routes/{id}/secrets', 201, rotated.body);
      assert.equal(rotated.body.signingSecrets.length, 2);
      assert.ok(rotated.body.signingSecrets.some((s: { expiresAt: string | null }) => s.expiresAt !== null));
      const stored = (await t.store.getRoute('tenant-a'))!;
      const refs = pipelineRoute(stored, new Date()).secret;
      assert.equal(refs.length, 2);
      const secrets = await Promise.all(refs.map((ref) => resolveSecret(ref, 'route')));
      const payload = '{"rotation":true}';
      const headers = signWebhook('msg_2', Math.floor(Date.now() / 1000), payload, secrets);
      assert.ok(new Webhook(rotated.body.signingSecret).verify(payload, { ...headers }));
      // After the window only the new one signs.
      assert.equal(pipelineRoute(stored, new Date(Date.now() + 3601_000)).secret.length, 1);
    });

    it('a rotation with no overlap stops every older secret at once, those of an earlier window too', async () => {
      const ended = await call('POST', '/v1/routes/tenant-a/secrets', { body: { overlapSeconds: 0 } });
      assert.equal(ended.status, 201);
      assert.equal(ended.body.signingSecrets.length, 1, 'the older secrets are dropped');
      const stored = (await t.store.getRoute('tenant-a'))!;
      const refs = pipelineRoute(stored, new Date()).secret;
      assert.equal(refs.length, 1);
      assert.equal(await resolveSecret(refs[0]!, 'route'), ended.body.signingSecret);
    });

    it('deletes an API route', async () => {
      assert.equal((await call('DELETE', '/v1/routes/tenant-a')).status, 204);
      assert.equal((await call('GET', '/v1/routes/tenant-a')).status, 404);
      assert.equal((await call('DELETE', '/v1/routes/tenant-a')).status, 404);
    });
  });

  describe('domains', () => {
    it('claims a domain with an MX and a TXT token to publish, and verifies it against DNS', async () => {
      const added = await call('POST', '/v1/domains', { body: { name: 'Customer.Test' } });
      assert.equal(added.status, 201);
      conforms('POST', '/v1/domains', 201, added.body);
      assert.equal(added.body.status, 'pending');
      const [mx, txt] = added.body.records;
      assert.deepEqual(mx, { type: 'MX', name: 'customer.test', value: '10 mx.mailbridge.test' });
      assert.equal(txt.name, '_mailbridge.customer.test');
      assert.match(txt.value, /^mailbridge-verification=[A-Za-z0-9_-]{32}$/);

      const early = await call('POST', '/v1/domains/customer.test/verify');
      assert.equal(early.status, 422);
      assert.match(early.body.error.message, /TXT _mailbridge\.customer\.test/);
      conforms('POST', '/v1/domains/{name}/verify', 422, early.body);

      // Someone else's token does not count; the claim's own does, however the TXT is split.
      zone['_mailbridge.customer.test'] = { TXT: [['mailbridge-verification=someone-else']] };
      assert.equal((await call('POST', '/v1/domains/customer.test/verify')).status, 422);
      zone['_mailbridge.customer.test'] = {
        TXT: [['v=spf1 -all'], [txt.value.slice(0, 20), txt.value.slice(20)]],
      };
      dnsDown = true;
      const down = await call('POST', '/v1/domains/customer.test/verify');
      assert.equal(down.status, 503);
      assert.equal(down.body.error.code, 'dns_unavailable');
      dnsDown = false;
      const verified = await call('POST', '/v1/domains/customer.test/verify');
      assert.equal(verified.status, 200);
      conforms('POST', '/v1/domains/{name}/verify', 200, verified.body);
      assert.equal(verified.body.status, 'verified');
    });

    it('will not let a verified or config domain be claimed again', async () => {
      const again = await call('POST', '/v1/domains', { body: { name: 'customer.test' } });
      assert.equal(again.status, 409);
      assert.equal(
        (await call('POST', '/v1/domains', { body: { name: 'example.test' } })).body.error.code,
        'read_only',
      );
      assert.equal((await call('POST', '/v1/domains', { body: { name: 'eu.corp.test' } })).status, 409);
      assert.match(
        (await call('POST', '/v1/domains', { body: { name: '*.x.test' } })).body.error.message,
        /^body\.name: /,
      );
    });

    it('lets one of two simultaneous claims win', async () => {
      const answers = await Promise.all([
        call('POST', '/v1/domains', { body: { name: 'contested.test' } }),
        call('POST', '/v1/domains', { body: { name: 'contested.test' } }),
      ]);
      assert.deepEqual(answers.map((a) => a.status).sort(), [201, 409]);
    });

    it('lists config and API domains and removes API ones', async () => {
      const listed = await call('GET', '/v1/domains');
      conforms('GET', '/v1/domains', 200, listed.body);
      assert.deepEqual(
        listed.body.items.map((d: { name: string; status: string; source: string }) => [
          d.name,
          d.status,
          d.source,
        ]),
        [
          ['example.test', 'verified', 'config'],
          ['*.corp.test', 'verified', 'config'],
          ['contested.test', 'pending', 'api'],
          ['customer.test', 'verified', 'api'],
        ],
      );
      assert.equal((await call('DELETE', '/v1/domains/contested.test')).status, 204);
      assert.equal((await call('GET', '/v1/domains/contested.test')).status, 404);
      assert.equal((await call('DELETE', '/v1/domains/example.test')).status, 409);
    });

    it('voids the token of a disputed claim deleted and made again: only the new one verifies', async () => {
      const first = await call('POST', '/v1/domains', { body: { name: 'disputed.test' } });
      assert.equal((await call('POST', '/v1/domains', { body: { name: 'disputed.test' } })).status, 409);
      assert.equal((await call('DELETE', '/v1/domains/disputed.test')).status, 204);
      const second = await call('POST', '/v1/domains', { body: { name: 'disputed.test' } });
      assert.equal(second.status, 201);
      const [oldTxt, newTxt] = [first.body.records[1].value, second.body.records[1].value];
      assert.notEqual(oldTxt, newTxt);
      zone['_mailbridge.disputed.test'] = { TXT: [[oldTxt]] };
      assert.equal((await call('POST', '/v1/domains/disputed.test/verify')).status, 422);
      zone['_mailbridge.disputed.test'] = { TXT: [[newTxt]] };
      assert.equal((await call('POST', '/v1/domains/disputed.test/verify')).body.status, 'verified');
    });
  });

  describe('message log', () => {
    const ids: string[] = [];
    const job = (route: string) => ({ route, endpoint: `https://${route}.test/`, webhookId: `msg_${route}` });

    before(async () => {
      const base = Date.now() - 60_000;
      for (let i = 0; i < 5; i++) {
        const at = (ms: number) => new Date(base + i * 1000 + ms).toISOString();
        const id = newMessageId(base + i * 1000);
        ids.push(id);
        const events: TimelineEvent[] = [
          {
            at: at(0),
            type: 'received',
            mailFrom: 'alice@sender.test',
            rcptTo: [i === 4 ? 'ops@example.test' : 'support@example.test'],
            size: 2048,
            remoteAddress: '192.0.2.1',
            helo: 'sender.test',
            tls: true,
          },
          {
            at: at(5),
            type: 'parsed',
            subject: `Ticket ${i}`,
            from: 'alice@sender.test',
            jobs: [job('inbox'), job('crm')],
            unrouted: [],
            warnings: [],
          },
          {
            at: at(6),
            type: 'attempt',
            ...job('inbox'),
            attempt: 1,
            status: 200,
            error: null,
            durationMs: 40,
          },
          { at: at(7), type: 'delivered', ...job('inbox'), status: 200 },
          {
            at: at(8),
            type: 'attempt',
            ...job('crm'),
            attempt: 1,
            status: 410,
            error: { class: 'http', text: 'Gone' },
            durationMs: 30,
          },
          {
            at: at(9),
            type: 'dead_lettered',
            ...job('crm'),
            reason: 'permanent',
            status: 410,
            error: 'Gone',
          },
        ];
        await t.store.appendEvents(
          id,
          events.map((event) => ({ eventId: eventId(), event })),
          { bucket: 'mail', key: `raw/${id}.eml` },
        );
      }
    });

    it('lists messages newest first with filters and cursor pagination', async () => {
      const first = await call('GET', '/v1/messages?limit=2', { key: reader });
      assert.equal(first.status, 200);
      conforms('GET', '/v1/messages', 200, first.body);
      assert.deepEqual(
        first.body.items.map((m: { id: string }) => m.id),
        [ids[4], ids[3]],
      );
      assert.equal(first.body.items[0].status, 'partially_delivered');
      const second = await call('GET', `/v1/messages?limit=2&cursor=${first.body.nextCursor}`, {
        key: reader,
      });
      assert.deepEqual(
        second.body.items.map((m: { id: string }) => m.id),
        [ids[2], ids[1]],
      );
      const ops = await call('GET', '/v1/messages?recipient=OPS@example.test');
      assert.deepEqual(
        ops.body.items.map((m: { id: string }) => m.id),
        [ids[4]],
      );
      const q = await call('GET', '/v1/messages?q=ticket%202&status=partially_delivered&route=crm');
      assert.deepEqual(
        q.body.items.map((m: { id: string }) => m.id),
        [ids[2]],
      );
      const bad = await call('GET', '/v1/messages?limit=500&status=lost');
      assert.equal(bad.status, 400);
      assert.match(bad.body.error.message, /query\.status: .*query\.limit: |query\.limit: .*query\.status: /);
      assert.match((await call('GET', '/v1/messages?cursor=abc')).body.error.message, /^query\.cursor/);
      // No word to look for would match every message.
      const wordless = await call('GET', '/v1/messages?q=!!!');
      assert.equal(wordless.status, 400);
      assert.match(wordless.body.error.message, /^query\.q: /);
    });

    it('shows one message with its timeline and a short-lived raw link', async () => {
      const shown = await call('GET', `/v1/messages/${ids[0]}`);
      assert.equal(shown.status, 200);
      conforms('GET', '/v1/messages/{id}', 200, shown.body);
      assert.deepEqual(
        shown.body.timeline.map((e: { type: string }) => e.type),
        ['received', 'parsed', 'attempt', 'delivered', 'attempt', 'dead_lettered'],
      );
      assert.deepEqual(shown.body.routes, ['inbox', 'crm']);
      const url = new URL(shown.body.raw.url);
      assert.equal(url.pathname, `/mail/raw/${ids[0]}.eml`);
      assert.equal(url.searchParams.get('X-Amz-Expires'), '300');
      assert.ok(url.searchParams.get('X-Amz-Signature'));
      // ULIDs are case-insensitive: a lowercased id finds the message.
      const lower = await call('GET', `/v1/messages/${ids[0]!.toLowerCase()}`);
      assert.equal(lower.status, 200);
      assert.equal(lower.body.id, ids[0]);
      assert.equal((await call('GET', `/v1/messages/${newMessageId()}`)).status, 404);
      assert.equal((await call('GET', '/v1/messages/not-an-id')).status, 404);
    });

    it('retries one route through the pipeline port, claims no job before parse, and logs who asked', async () => {
      // Lowercased, as a ULID may be typed.
      const retried = await call('POST', `/v1/messages/${ids[0]!.toLowerCase()}/retry`, {
        body: { route: 'inbox' },
      });
      assert.equal(retried.status, 202);
      conforms('POST', '/v1/messages/{id}/retry', 202, retried.body);
      assert.deepEqual(retried.body, { messageId: ids[0], jobs: [] });
      assert.deepEqual(retries.at(-1), { messageId: ids[0], route: 'inbox', by: adminId });
      const shown = await call('GET', `/v1/messages/${ids[0]}`);
      const { at: _at, ...last } = shown.body.timeline.at(-1);
      assert.deepEqual(last, { type: 'retried', by: adminId, route: 'inbox', jobs: [], reparse: true });
      // crm failed before, inbox is being parsed again: not settled until its jobs show.
      assert.equal(shown.body.status, 'delivering');

      // crm is in no config and no store (deleted since): parse would queue nothing for it.
      const asked = retries.length;
      const gone = await call('POST', `/v1/messages/${ids[0]}/retry`, { body: { route: 'crm' } });
      assert.equal(gone.status, 409);
      conforms('POST', '/v1/messages/{id}/retry', 409, gone.body);
      assert.match(gone.body.error.message, /^route "crm" no longer exists: retry every route/);
      assert.equal(retries.length, asked, 'nothing queued');
      const unknown = await call('POST', `/v1/messages/${ids[0]}/retry`, { body: { route: 'nope' } });
      assert.equal(unknown.status, 400);
      assert.match(unknown.body.error.message, /^body\.route/);
      assert.equal((await call('POST', `/v1/messages/${ids[0]}/retry`, { key: reader })).status, 403);
    });

    it('logs the retried event when the store fails the first writes, counting each failure', async () => {
      const faulty = await t.behindFaultProxy({ maxAttempts: 1 });
      try {
        const metrics = new CountedMetrics({ namespace: 'mailbridge', serviceName: 'api' });
        const handler = createApiHandler({
          store: faulty.store,
          config,
          runtime: 'local',
          mxHost: 'mx.mailbridge.test',
          resolver: async () => [],
          secrets: localSigningSecretStore,
          retry: { retry: async () => [] },
          presign: async () => 'http://127.0.0.1:9/raw',
          metrics,
        });
        faulty.proxy.add({ ops: ['DynamoDB.UpdateItem'], action: { kind: 'fail' }, times: 2 });
        const answer = await handler({
          method: 'POST',
          path: `/v1/messages/${ids[2]}/retry`,
          query: {},
          headers: { authorization: `Bearer ${admin}` },
          body: null,
        });
        assert.equal(answer.status, 202);
        assert.equal((await t.store.getMessage(ids[2]!))?.timeline.at(-1)?.type, 'retried');
        assert.deepEqual(
          metrics.counted.filter((name) => name === 'ControlLogWriteFailures'),
          ['ControlLogWriteFailures', 'ControlLogWriteFailures'],
        );
      } finally {
        await faulty.close();
      }
    });

    it('lists the messages whose delivery moved again, for a reader that did not see them arrive', async () => {
      const retried = await call('POST', `/v1/messages/${ids[1]}/retry`, {});
      assert.equal(retried.status, 202);
      const at = (await call('GET', `/v1/messages/${ids[1]}`)).body.timeline.at(-1).at;
      const listed = await call('GET', '/v1/activity', { key: reader });
      assert.equal(listed.status, 200);
      conforms('GET', '/v1/activity', 200, listed.body);
      assert.deepEqual(listed.body.items.at(-1), { messageId: ids[1], at });
      const after = new Date(Date.parse(at) + 1).toISOString();
      const later = await call('GET', `/v1/activity?since=${encodeURIComponent(after)}`);
      assert.deepEqual(later.body, { items: [], nextCursor: null });
      const bad = await call('GET', '/v1/activity?since=yesterday');
      assert.equal(bad.status, 400);
      assert.match(bad.body.error.message, /^query\.since/);
      assert.equal((await call('GET', '/v1/activity?cursor=bm9wZQ')).status, 400);
    });

    it('lists refusals since a time, by recipient', async () => {
      const at = new Date().toISOString();
      const refusal = {
        at,
        recipient: 'ghost@example.test',
        mailFrom: 'x@sender.test',
        remoteAddress: '203.0.113.1',
        reply: '550 5.1.1 Mailbox <ghost@example.test> does not exist',
      };
      await t.store.putRefusals([refusal, { ...refusal, recipient: 'other@example.test' }]);
      const listed = await call('GET', '/v1/refusals?recipient=ghost@example.test');
      assert.equal(listed.status, 200);
      conforms('GET', '/v1/refusals', 200, listed.body);
      assert.deepEqual(listed.body.items, [refusal]);
      const old = await call('GET', `/v1/refusals?since=${new Date(Date.now() + 60_000).toISOString()}`);
      assert.deepEqual(old.body.items, []);
    });
  });

  it('serves the published OpenAPI document', async () => {
    const served = await call('GET', '/v1/openapi.json', { key: reader });
    assert.equal(served.status, 200);
    assert.deepEqual(served.body, document);
    assert.equal(served.body.openapi, '3.1.0');
  });

  describe('route patterns, regex budget, ids and paging', () => {
    const hook = ['http://127.0.0.1:9999/hook'];
    const create = (id: string, match: string[]) =>
      call('POST', '/v1/routes', { body: { id, match, endpoints: hook } });
    const ids = (page: { items: { id: string }[] }) => page.items.map((route) => route.id);

    it('takes regexes RE2 runs, and names the pattern it cannot run or that would match nothing', async () => {
      // RE2 runs it in time linear in the address (the RCPT index test sends it one).
      const nested = await create('nested', ['/^(a+)+b@example\\.test$/']);
      assert.equal(nested.status, 201, JSON.stringify(nested.body));
      assert.equal((await call('DELETE', '/v1/routes/nested')).status, 204);
      const lookahead = await create('lookahead', [
        'ok@example.test',
        '/^(?!noreply)[a-z]+@example\\.test$/',
      ]);
      assert.equal(lookahead.status, 400);
      conforms('POST', '/v1/routes', 400, lookahead.body);
      assert.match(
        lookahead.body.error.message,
        /^body\.match\[1\]: bad pattern: not an RE2 pattern \(no lookaround, no backreferences\): .*\(\?!/,
      );
      assert.match(
        (await create('backref', ['/^(a)\\1@example\\.test$/'])).body.error.message,
        /^body\.match\[0\]: /,
      );
      const everything = await create('everything', ['*@*']);
      assert.equal(everything.status, 400);
      assert.match(everything.body.error.message, /^body\.match\[0\]: "\*@\*" would match no mail/);
      assert.equal((await call('GET', '/v1/routes/everything')).status, 404);
    });

    it(`holds at most ${MAX_API_REGEXES} regexes over all API routes, and says so with 409`, async () => {
      const regexes = (tag: string, count: number) =>
        Array.from({ length: count }, (_, i) => `/^${tag}${i}-[a-z]+@example\\.test$/`);
      assert.equal((await create('rx-many', regexes('a', MAX_API_REGEXES))).status, 201);
      const over = await create('rx-one', regexes('b', 1));
      assert.equal(over.status, 409);
      conforms('POST', '/v1/routes', 409, over.body);
      assert.equal(over.body.error.code, 'limit_reached');
      assert.match(
        over.body.error.message,
        new RegExp(`at most ${MAX_API_REGEXES} .* make ${MAX_API_REGEXES + 1}`),
      );
      assert.equal(
        (await create('rx-none', ['exact@example.test'])).status,
        201,
        'no regex, nothing counted',
      );
      const body = (match: string[]) => ({ match, endpoints: hook });
      const changed = await call('PUT', '/v1/routes/rx-many', { body: body(regexes('c', MAX_API_REGEXES)) });
      assert.equal(changed.status, 200, 'as many regexes as before');
      const grown = await call('PUT', '/v1/routes/rx-many', {
        body: body(regexes('c', MAX_API_REGEXES + 1)),
      });
      assert.equal(grown.status, 409);
      assert.equal((await call('DELETE', '/v1/routes/rx-many')).status, 204);
      assert.equal((await create('rx-one', regexes('b', 1))).status, 201, 'room again');
      for (const id of ['rx-one', 'rx-none']) await call('DELETE', `/v1/routes/${id}`);
    });

    it('replaces a route whose body leaves out its id, as the schema allows', async () => {
      assert.equal((await create('no-id', ['a@example.test'])).status, 201);
      const replaced = await call('PUT', '/v1/routes/no-id', {
        body: { match: ['b@example.test'], endpoints: hook },
      });
      assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
      assert.equal(replaced.body.id, 'no-id');
      assert.deepEqual(replaced.body.match, ['b@example.test']);
      await call('DELETE', '/v1/routes/no-id');
    });

    it('keeps route ids case-sensitive: dup1 and DUP1 are two routes', async () => {
      assert.equal((await create('dup1', ['lower@example.test'])).status, 201);
      assert.equal((await create('DUP1', ['upper@example.test'])).status, 201);
      assert.deepEqual((await call('GET', '/v1/routes/DUP1')).body.match, ['upper@example.test']);
      assert.equal((await call('DELETE', '/v1/routes/DUP1')).status, 204);
      assert.deepEqual((await call('GET', '/v1/routes/dup1')).body.match, ['lower@example.test']);
      await call('DELETE', '/v1/routes/dup1');
    });

    it('pages through one list, the config file’s routes (and domains) then the API’s, never past the limit', async () => {
      for (const id of ['page-1', 'page-2', 'page-3']) await create(id, [`${id}@example.test`]);
      for (const name of ['page-1.test', 'page-2.test']) {
        assert.equal((await call('POST', '/v1/domains', { body: { name } })).status, 201);
      }
      const names = (page: { items: { name: string }[] }) => page.items.map((domain) => domain.name);
      for (const [path, keys, first] of [
        ['/v1/routes', ids, ['inbox']],
        ['/v1/domains', names, ['example.test', '*.corp.test']],
      ] as const) {
        const whole = await call('GET', `${path}?limit=100`);
        assert.equal(whole.body.nextCursor, null);
        assert.deepEqual(keys(whole.body).slice(0, first.length), first, path);
        for (const limit of [1, 2]) {
          const walked: string[] = [];
          let cursor: string | null = null;
          do {
            const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
            const page = await call('GET', `${path}?limit=${limit}${query}`);
            assert.equal(page.status, 200);
            conforms('GET', path, 200, page.body);
            assert.ok(
              page.body.items.length <= limit,
              `${path}: a page of ${page.body.items.length} for limit=${limit}`,
            );
            walked.push(...keys(page.body));
            cursor = page.body.nextCursor;
          } while (cursor !== null);
          assert.deepEqual(walked, keys(whole.body), `${path} limit=${limit}`);
        }
        const bad = await call('GET', `${path}?cursor=page-1`);
        assert.equal(bad.status, 400);
        assert.match(bad.body.error.message, /^query\.cursor: /);
      }
      for (const id of ['page-1', 'page-2', 'page-3']) await call('DELETE', `/v1/routes/${id}`);
      for (const name of ['page-1.test', 'page-2.test']) await call('DELETE', `/v1/domains/${name}`);
    });
  });
});
