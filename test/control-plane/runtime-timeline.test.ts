import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TimelineEvent } from '../../core/control/index.ts';
import { type LocalRuntime, startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { ALL_PORTS_FREE, apiCaller, mxPort, sendMail } from '../../harness/local-runtime.ts';
import { until } from '../../harness/wait.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';

/** Each wait below covers at most one 1 s retry plus the pollers' turns. */
const WAIT_MS = 15_000;
const SECRET = 'whsec_dGltZWxpbmU=';

describe('message log timelines in the local runtime (npm start), mail in over SMTP, the API over HTTP', () => {
  let dir: string;
  let runtime: LocalRuntime;
  let flaky: WebhookReceiver;
  let broken: WebhookReceiver;
  const call = apiCaller(() => runtime);
  const sent: string[] = [];
  const state: { deadId?: string } = {};

  const send = async (to: string, subject: string) => {
    const id = await sendMail(mxPort(runtime), to, subject);
    sent.push(id);
    return id;
  };
  const timeline = async (id: string): Promise<TimelineEvent[]> => {
    const shown = await call('GET', `/v1/messages/${id}`);
    return shown.status === 200 ? shown.body.timeline : [];
  };
  const timelineWith = (id: string, type: string, count = 1) =>
    until(
      `${count} ${type} event(s) of ${id}`,
      async () => {
        const events = await timeline(id);
        // The listener's received event is written in the background, after the 250: it may come later.
        const complete = events.some((event) => event.type === 'received');
        return complete && events.filter((event) => event.type === type).length >= count ? events : undefined;
      },
      WAIT_MS,
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-control-timeline-'));
    // The first try of each webhook fails with a 500 until the test lets it through.
    flaky = await startWebhookReceiver({ secret: SECRET, failRate: 1, failures: ['500'] });
    broken = await startWebhookReceiver({ secret: SECRET });
    broken.down = true;
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'flaky',
          match: ['flaky@example.test'],
          endpoints: [flaky.url],
          secret: { value: SECRET },
          retrySchedule: ['1s'],
        },
        {
          id: 'broken',
          match: ['broken@example.test'],
          endpoints: [broken.url],
          secret: { value: SECRET },
          retrySchedule: [],
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
    });
    runtime = await startLocalRuntime({
      configFile,
      dataDir: dir,
      ports: ALL_PORTS_FREE,
      pollWaitSeconds: 1,
    });
  });
  after(async () => {
    await runtime?.close();
    await flaky?.close();
    await broken?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a 500 then a 2xx: received, parsed, attempt 500, retry_scheduled, attempt 200, delivered; listed as delivered', async () => {
    const id = await send('flaky@example.test', 'flaky endpoint');
    await timelineWith(id, 'attempt');
    flaky.failRate = 0;
    const events = await timelineWith(id, 'delivered');
    assert.deepEqual(
      events.map((event) => event.type),
      ['received', 'parsed', 'attempt', 'retry_scheduled', 'attempt', 'delivered'],
    );
    const attempts = events.flatMap((event) =>
      event.type === 'attempt' ? [[event.route, event.status]] : [],
    );
    assert.deepEqual(attempts, [
      ['flaky', 500],
      ['flaky', 200],
    ]);
    assert.equal(flaky.unique.size, 1, 'delivered once');
    const listed = await call('GET', '/v1/messages?route=flaky');
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.items.map((item: { id: string; status: string }) => [item.id, item.status]),
      [[id, 'delivered']],
    );
  });

  it('an endpoint that is down with no retries left: dead_lettered with its reason, listed under status=failed', async () => {
    const id = await send('broken@example.test', 'broken endpoint');
    state.deadId = id;
    const events = await timelineWith(id, 'dead_lettered');
    assert.deepEqual(
      events.map((event) => event.type),
      ['received', 'parsed', 'attempt', 'dead_lettered'],
    );
    const dead = events.at(-1)!;
    assert.ok(dead.type === 'dead_lettered');
    assert.deepEqual(
      { route: dead.route, reason: dead.reason, status: dead.status },
      { route: 'broken', reason: 'exhausted', status: 503 },
    );
    // A message whose every delivery is in the DLQ has the status "failed" (the schema's name for it).
    const listed = await call('GET', '/v1/messages?status=failed');
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.items.map((item: { id: string }) => item.id),
      [id],
    );
    assert.equal((await call('GET', '/v1/messages?status=delivered')).body.items.length, 1);
  });

  it('POST /v1/messages/{id}/retry once the endpoint is fixed: a retried event naming the key that asked, then delivered', async () => {
    const id = state.deadId!;
    broken.down = false;
    const retry = await call('POST', `/v1/messages/${id}/retry`, {});
    assert.equal(retry.status, 202, JSON.stringify(retry.body));
    const events = await timelineWith(id, 'delivered');
    const keys = (await call('GET', '/v1/keys')).body.items as { id: string; name: string }[];
    const retried = events.find((event) => event.type === 'retried');
    assert.ok(retried?.type === 'retried', JSON.stringify(events));
    assert.equal(retried.by, keys.find((key) => key.name === 'dev')!.id);
    const types = events.map((event) => event.type);
    assert.ok(types.indexOf('retried') < types.indexOf('delivered'), types.join(', '));
    assert.equal(broken.unique.size, 1);
    assert.equal((await call('GET', `/v1/messages/${id}`)).body.status, 'delivered');
  });

  it('GET /v1/messages?limit=1 and its cursor walk every message newest first, no duplicates, no gaps', async () => {
    await send('flaky@example.test', 'page a');
    await send('flaky@example.test', 'page b');
    await until(
      'every message in the log',
      async () => (await call('GET', '/v1/messages?limit=100')).body.items.length === sent.length,
      WAIT_MS,
    );
    const walked: { id: string; receivedAt: string }[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = await call('GET', `/v1/messages?limit=1${query}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.ok(page.body.items.length <= 1);
      walked.push(...page.body.items);
      cursor = page.body.nextCursor;
      assert.ok(walked.length <= sent.length, 'the walk ends');
    } while (cursor);
    assert.deepEqual(
      walked.map((item) => item.id),
      [...sent].reverse(),
      'newest first, each once',
    );
    const times = walked.map((item) => item.receivedAt);
    assert.deepEqual(times, [...times].sort().reverse());
  });
});
