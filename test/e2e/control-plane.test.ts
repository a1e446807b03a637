import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { Webhook } from 'standardwebhooks';
import { s3Presigner } from '../../core/aws/index.ts';
import {
  type ApiRequest,
  type ControlStore,
  createApiHandler,
  localSigningSecretStore,
  newApiKey,
  ROUTE_SYNC_DEFAULTS,
  type TimelineEvent,
} from '../../core/control/index.ts';
import type { InboundEvent } from '../../core/index.ts';
import { inboundRetryPort } from '../../functions/index.ts';
import { receivedEvent, startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';
import type { FaultAction, FaultProxy } from '../../harness/fault-proxy.ts';
import { type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { until } from '../../harness/wait.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';

const SECRET = 'whsec_Y29udHJvbC1wbGFuZS10aW1lbGluZQ==';

// Longest wait for a step of the pipeline (parse, a delivery try, a retry) to show.
const WAIT_MS = 20_000;

const raw = (subject: string, to: string) =>
  `From: Ada <ada@sender.test>\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@sender.test>\r\n\r\n${'A line of a typical message body.\r\n'.repeat(280)}`;

/**
 * The pipeline (emulator, parse and deliver behind their pollers) on the control plane's store
 * (dynalite), with the API handler over the same store and the retry port over the emulator: what
 * `npm start` runs, and what AWS runs with DynamoDB and SQS.
 */
describe('the pipeline on the control plane: message log, API routes, retry', () => {
  let control: TestControlStore;
  let pipeline: Pipeline;
  let tickets: WebhookReceiver;
  let broken: WebhookReceiver;
  let api: ReturnType<typeof createApiHandler>;
  let key: string;

  const call = async (method: string, path: string, body?: unknown) => {
    const request: ApiRequest = {
      method,
      path,
      query: {},
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    };
    const response = await api(request);
    return { status: response.status, body: response.body ? JSON.parse(response.body) : undefined };
  };
  const timeline = async (id: string): Promise<TimelineEvent[]> => {
    const shown = await call('GET', `/v1/messages/${id}`);
    return shown.status === 200 ? shown.body.timeline : [];
  };
  const types = async (id: string) => (await timeline(id)).map((event) => event.type);
  /** Stores a message as the listener does: raw object, InboundEvent on the queue, `received` logged. */
  const receive = async (
    to: string,
    subject: string,
    filtering?: InboundEvent['filtering'],
  ): Promise<InboundEvent> => {
    const [event] = await pipeline.injectBatch([{ raw: raw(subject, to), rcptTo: [to], filtering }]);
    const { envelope, raw: stored } = event!;
    const received = receivedEvent({
      at: event!.receivedAt,
      mailFrom: envelope.mailFrom,
      rcptTo: envelope.rcptTo,
      size: stored.size,
      remoteAddress: envelope.remoteAddress,
      helo: envelope.helo,
      tls: false,
      sha256: stored.sha256,
      ...(filtering ? { filtering } : {}),
    });
    await control.store.appendEvents(event!.id, [received], { bucket: stored.bucket, key: stored.key });
    return event!;
  };

  before(async () => {
    control = await startTestControlStore();
    tickets = await startWebhookReceiver({ secret: SECRET, failures: ['500'] });
    broken = await startWebhookReceiver({ secret: SECRET });
    broken.down = true;
    pipeline = await startPipeline({
      domains: ['example.test', 'tenant.test'],
      routes: [
        {
          id: 'tickets',
          match: ['support@example.test'],
          endpoints: [tickets.url],
          secret: { value: SECRET },
          retrySchedule: [1],
        },
        {
          id: 'broken',
          match: ['broken@example.test'],
          endpoints: [broken.url],
          secret: { value: SECRET },
          retrySchedule: [],
        },
      ],
      controlStore: control.store,
    });
    const made = newApiKey('ops', 'full', new Date());
    await control.store.createKey(made.stored);
    key = made.secret;
    const presign = s3Presigner(pipeline.s3);
    api = createApiHandler({
      store: control.store,
      config: pipeline.config,
      runtime: 'local',
      mxHost: pipeline.config.hostname,
      resolver: async () => [],
      secrets: localSigningSecretStore,
      retry: inboundRetryPort({
        store: control.store,
        s3: pipeline.s3,
        sqs: pipeline.sqs,
        inboundQueueUrl: pipeline.emulator.resources.inboundQueueUrl,
      }),
      presign: (ref) => presign(ref.bucket, ref.key),
    });
  });

  after(async () => {
    await pipeline.close();
    await tickets.close();
    await broken.close();
    await control.close();
  });

  it('a failed try, its retry and the delivery are one timeline: parsed, attempt 503, retry_scheduled, attempt 200, delivered', async () => {
    tickets.down = true;
    const event = await receive('support@example.test', 'timeline');
    await until('a retry', async () => (await types(event.id)).includes('retry_scheduled'), WAIT_MS);
    tickets.down = false;
    await until('delivery', async () => (await types(event.id)).includes('delivered'), WAIT_MS);
    const shown = await call('GET', `/v1/messages/${event.id}`);
    assert.equal(shown.body.status, 'delivered');
    assert.equal(shown.body.subject, 'timeline');
    assert.deepEqual(shown.body.routes, ['tickets']);
    const events: TimelineEvent[] = shown.body.timeline;
    assert.deepEqual(
      events.map((e) => e.type),
      ['received', 'parsed', 'attempt', 'retry_scheduled', 'attempt', 'delivered'],
    );
    const [, parsed, first, scheduled, second] = events;
    const webhookId = [...tickets.unique.keys()].find(
      (id) => (tickets.unique.get(id)!.payload as { id: string }).id === event.id,
    );
    assert.deepEqual(parsed, {
      ...parsed,
      from: 'ada@sender.test',
      jobs: [{ route: 'tickets', endpoint: tickets.url, webhookId }],
      unrouted: [],
    });
    assert.deepEqual(
      [first, second].map((e) => e?.type === 'attempt' && [e.attempt, e.status, e.error?.class ?? null]),
      [
        [1, 503, 'http'],
        [2, 200, null],
      ],
    );
    assert.ok(scheduled?.type === 'retry_scheduled' && scheduled.attempt === 2);
  });

  it('an exhausted delivery is dead-lettered in the log with its reason, and the message shows failed', async () => {
    const event = await receive('broken@example.test', 'dead end');
    await until('the DLQ', async () => (await types(event.id)).includes('dead_lettered'), WAIT_MS);
    const shown = await call('GET', `/v1/messages/${event.id}`);
    assert.equal(shown.body.status, 'failed');
    const dead = shown.body.timeline.find((e: TimelineEvent) => e.type === 'dead_lettered');
    assert.deepEqual(
      { reason: dead.reason, status: dead.status, route: dead.route },
      { reason: 'exhausted', status: 503, route: 'broken' },
    );
  });

  it('retry by the API delivers again under the same webhook-id, and the timeline shows who asked', async () => {
    const event = await receive('support@example.test', 'retry me');
    await until('delivery', async () => (await types(event.id)).includes('delivered'), WAIT_MS);
    const before = tickets.received.filter((w) => (w.payload as { id: string }).id === event.id);
    assert.equal(before.length, 1);

    const retried = await call('POST', `/v1/messages/${event.id}/retry`, { route: 'tickets' });
    assert.equal(retried.status, 202);
    assert.deepEqual(retried.body.jobs, [], 'parse builds the jobs, after the answer');
    const again = await until(
      'the second delivery',
      async () => {
        const all = tickets.received.filter((w) => (w.payload as { id: string }).id === event.id);
        return all.length === 2 ? all : undefined;
      },
      WAIT_MS,
    );
    assert.equal(again[1]!.webhookId, again[0]!.webhookId, 'receivers dedupe on it');
    // The same document but for its links, signed afresh at each try.
    const unsigned = (body: string) => body.replace(/"url":"[^"]*"/g, '"url":""');
    assert.equal(unsigned(again[1]!.body), unsigned(again[0]!.body), 'the same document');
    const events = await until(
      'the second delivered event',
      async () => {
        const all = await timeline(event.id);
        return all.filter((e) => e.type === 'delivered').length === 2 ? all : undefined;
      },
      WAIT_MS,
    );
    const asked = events.find((e) => e.type === 'retried');
    assert.ok(asked?.type === 'retried');
    assert.equal(asked.by, (await control.store.listKeys())[0]!.id);
    // What `mailbridge tail` reads to follow a message it did not see arrive (the last minute's).
    const activity = await call('GET', '/v1/activity');
    assert.ok(
      activity.body.items.some(
        (item: { messageId: string; at: string }) => item.messageId === event.id && item.at === asked.at,
      ),
    );
    const parses = events.flatMap((e) => (e.type === 'parsed' ? [e] : []));
    assert.deepEqual(
      parses.map((e) => e.warnings),
      [[], []],
      'parsed again from the raw message, and not a duplicate of itself',
    );
    assert.deepEqual(parses[1]!.jobs, [
      { route: 'tickets', endpoint: tickets.url, webhookId: before[0]!.webhookId },
    ]);
    assert.equal((await call('GET', `/v1/messages/${event.id}`)).body.status, 'delivered');
  });

  it('a quarantined message stays held when retried; a release delivers it with the verdicts the listener logged', async () => {
    const filtering = {
      spam: {
        status: 'scanned' as const,
        score: 7.5,
        action: 'add header',
        symbols: [{ name: 'BAYES_SPAM', score: 5.1 }],
      },
      virus: { status: 'scanned' as const, infected: false, names: [] },
      routes: { tickets: { action: 'quarantine' as const, reasons: ['spam'] } },
    };
    const event = await receive('support@example.test', 'held for spam', filtering);
    const quarantines = (count: number) => async () =>
      (await types(event.id)).filter((type) => type === 'quarantined').length === count ? true : undefined;
    await until('the quarantine', quarantines(1));
    assert.equal((await call('GET', `/v1/messages/${event.id}`)).body.status, 'quarantined');

    // A retry parses it again from the log: the listener's verdicts hold it back again.
    assert.equal((await call('POST', `/v1/messages/${event.id}/retry`, {})).status, 202);
    await until('the second quarantine', quarantines(2));

    assert.equal((await call('POST', `/v1/messages/${event.id}/release`, {})).status, 202);
    const [webhook] = await until('the released delivery', async () => {
      const found = tickets.received.filter((w) => (w.payload as { id: string }).id === event.id);
      return found.length > 0 ? found : undefined;
    });
    const payload = webhook!.payload as { spam: { verdict: string; score: number }; warnings: string[] };
    assert.deepEqual([payload.spam.verdict, payload.spam.score], ['spam', 7.5]);
    assert.ok(payload.warnings.includes('released: quarantined for spam'), payload.warnings.join('; '));
    assert.equal(
      tickets.received.filter((w) => (w.payload as { id: string }).id === event.id).length,
      1,
      'the retry delivered nothing',
    );
  });

  it('a retry after the routes changed delivers by the routes in force and the status settles: a fixed endpoint, a deleted route', async () => {
    /** An API route to nothing yet, and a receiver that verifies with the secret the API made for it. */
    const route = async (id: string, match: string) => {
      const made = await call('POST', '/v1/routes', {
        id,
        match: [match],
        endpoints: ['http://127.0.0.1:9/gone'],
        retrySchedule: [],
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const receiver = await startWebhookReceiver({ secret: made.body.signingSecret });
      const moveTo = async (endpoint: string) => {
        const moved = await call('PUT', `/v1/routes/${id}`, {
          match: [match],
          endpoints: [endpoint],
          retrySchedule: [],
        });
        assert.equal(moved.status, 200, JSON.stringify(moved.body));
      };
      return { receiver, moveTo };
    };
    const closed = await route('closed', 'closed@example.test');
    // `tmp` takes one address that `rest` takes once `tmp` is deleted.
    const tmp = await route('tmp', 'moved@example.test');
    const rest = await route('rest', '*@example.test');
    await tmp.moveTo(tmp.receiver.url);
    await rest.moveTo(rest.receiver.url);
    const status = async (id: string) => (await call('GET', `/v1/messages/${id}`)).body.status;
    const reaches = (id: string, wanted: string) => async () =>
      (await status(id)) === wanted ? true : undefined;
    try {
      const dead = await receive('closed@example.test', 'to a closed endpoint');
      const moved = await receive('moved@example.test', 'to a route deleted later');
      await until('the dead letter', reaches(dead.id, 'failed'), WAIT_MS);
      await until('the delivery by tmp', reaches(moved.id, 'delivered'), WAIT_MS);

      await closed.moveTo(closed.receiver.url);
      assert.equal((await call('DELETE', '/v1/routes/tmp')).status, 204);
      // Parse reads the route changes again once its copy is that old.
      await sleep(ROUTE_SYNC_DEFAULTS.pollIntervalMs);

      const retried = await call('POST', `/v1/messages/${dead.id}/retry`, { route: 'closed' });
      assert.deepEqual(retried, { status: 202, body: { messageId: dead.id, jobs: [] } });
      assert.equal((await call('POST', `/v1/messages/${moved.id}/retry`, {})).status, 202);
      await until(
        'the retried message delivered to the fixed endpoint',
        reaches(dead.id, 'delivered'),
        WAIT_MS,
      );
      await until('the re-routed message delivered', reaches(moved.id, 'delivered'), WAIT_MS);
      assert.equal(closed.receiver.unique.size, 1);
      assert.equal(rest.receiver.unique.size, 1);
      const reparsed = (await timeline(dead.id)).filter((event) => event.type === 'parsed').at(-1);
      assert.deepEqual(reparsed?.type === 'parsed' && reparsed.jobs.map((job) => job.endpoint), [
        closed.receiver.url,
      ]);
      // The deleted route alone cannot be retried: parse would queue nothing for it.
      assert.equal((await call('POST', `/v1/messages/${moved.id}/retry`, { route: 'tmp' })).status, 409);
    } finally {
      for (const id of ['closed', 'rest']) await call('DELETE', `/v1/routes/${id}`);
      await Promise.all([closed, tmp, rest].map(({ receiver }) => receiver.close()));
    }
  });

  it('a route made through the API takes mail at once, signed with the secret the API showed once, and a rotation and the end of its window sign at once', async () => {
    const created = await call('POST', '/v1/routes', {
      id: 'tenant',
      match: ['*@tenant.test'],
      endpoints: ['http://127.0.0.1:9/placeholder'],
    });
    assert.equal(created.status, 201);
    const tenant = await startWebhookReceiver({ secret: created.body.signingSecret });
    let newest: WebhookReceiver | undefined;
    try {
      const moved = await call('PUT', '/v1/routes/tenant', {
        id: 'tenant',
        match: ['*@tenant.test'],
        endpoints: [tenant.url],
      });
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      const event = await receive('orders@tenant.test', 'tenant mail');
      await tenant.waitForUnique(1, 20_000);
      assert.equal(tenant.invalid, 0, 'the signature verifies with the secret the API returned');
      assert.equal((tenant.received[0]!.payload as { id: string }).id, event.id);

      // A rotation signs the next delivery with both secrets at once: deliver reads the route as stored.
      const rotated = await call('POST', '/v1/routes/tenant/secrets', { overlapSeconds: 3600 });
      assert.equal(rotated.status, 201);
      await receive('orders@tenant.test', 'after rotation');
      await tenant.waitForUnique(2, 20_000);
      const { body, headers } = tenant.received[1]!;
      assert.equal(String(headers['webhook-signature']).split(' ').length, 2, 'old and new secret');
      assert.doesNotThrow(() =>
        new Webhook(rotated.body.signingSecret).verify(body, headers as Record<string, string>),
      );

      // A rotation with no overlap ends the older secrets' window at once: the newest signs alone.
      const ended = await call('POST', '/v1/routes/tenant/secrets', { overlapSeconds: 0 });
      assert.equal(ended.status, 201);
      newest = await startWebhookReceiver({ secret: ended.body.signingSecret });
      // To an address parse has not seen, so it reads the routes again and the move is in force.
      const movedAgain = await call('PUT', '/v1/routes/tenant', {
        id: 'tenant',
        match: ['*@tenant.test', 'ended@example.test'],
        endpoints: [newest.url],
      });
      assert.equal(movedAgain.status, 200, JSON.stringify(movedAgain.body));
      await receive('ended@example.test', 'window ended');
      await newest.waitForUnique(1, 20_000);
      const last = newest.received[0]!;
      assert.equal(String(last.headers['webhook-signature']).split(' ').length, 1, 'the newest secret alone');
      for (const gone of [created.body.signingSecret, rotated.body.signingSecret]) {
        assert.throws(() => new Webhook(gone).verify(last.body, last.headers as Record<string, string>));
      }
    } finally {
      await tenant.close();
      await newest?.close();
    }
  });
});

describe('the message log store failing costs no delivery', () => {
  let control: TestControlStore;
  let faults: FaultProxy;
  let faultyStore: ControlStore;
  let pipeline: Pipeline;
  let tickets: WebhookReceiver;

  before(async () => {
    control = await startTestControlStore();
    ({ proxy: faults, store: faultyStore } = await control.behindFaultProxy({ maxAttempts: 2 }));
    tickets = await startWebhookReceiver({ secret: SECRET });
    pipeline = await startPipeline({
      routes: [
        { id: 'tickets', match: ['*@example.test'], endpoints: [tickets.url], secret: { value: SECRET } },
      ],
      controlStore: faultyStore,
    });
  });

  after(async () => {
    await pipeline.close();
    await tickets.close();
    await control.close();
  });

  it('500s, throttling and dropped connections on every store call: each message is still delivered once', async () => {
    // Warm: the first message loads the routes while the store answers.
    await pipeline.injectBatch([{ raw: raw('warm', 'a@example.test'), rcptTo: ['a@example.test'] }]);
    await tickets.waitForUnique(1, 20_000);
    const failures: FaultAction[] = [{ kind: 'fail' }, { kind: 'throttle' }, { kind: 'drop' }];
    for (const [index, action] of failures.entries()) {
      faults.clear();
      faults.add({ action });
      await pipeline.injectBatch([
        { raw: raw(`during ${action.kind}`, `b${index}@example.test`), rcptTo: [`b${index}@example.test`] },
      ]);
      await tickets.waitForUnique(2 + index, 20_000);
    }
    assert.equal(tickets.invalid, 0);
    faults.clear();
    assert.ok(
      (faults.calls.get('DynamoDB.UpdateItem') ?? 0) > 0,
      'the log writes went to the store and failed',
    );
  });
});

describe('one S3 PUT per typical message', () => {
  let control: TestControlStore;
  let pipeline: Pipeline;
  let tickets: WebhookReceiver;

  before(async () => {
    control = await startTestControlStore();
    tickets = await startWebhookReceiver({ secret: SECRET });
    pipeline = await startPipeline({
      routes: [
        { id: 'tickets', match: ['*@example.test'], endpoints: [tickets.url], secret: { value: SECRET } },
      ],
      controlStore: control.store,
    });
  });

  after(async () => {
    await pipeline.close();
    await tickets.close();
    await control.close();
  });

  it('10 KB messages over SMTP: the raw copy is the only S3 write, and the duplicate marker a table write', async () => {
    const count = () => {
      const s3Writes = ['S3.PutObject', 'S3.CreateMultipartUpload', 'S3.UploadPart'].reduce(
        (sum, op) => sum + (pipeline.proxy.calls.get(op as never) ?? 0),
        0,
      );
      return { s3Writes, s3Reads: pipeline.proxy.calls.get('S3.GetObject' as never) ?? 0 };
    };
    const start = count();
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: pipeline.smtpPort,
      secure: false,
      ignoreTLS: true,
    });
    const messages = 5;
    for (let i = 0; i < messages; i++) {
      await transport.sendMail({
        envelope: { from: 'ada@sender.test', to: [`ticket${i}@example.test`] },
        raw: raw(`typical ${i}`, `ticket${i}@example.test`),
      });
    }
    transport.close();
    await tickets.waitForUnique(messages, 30_000);
    const end = count();
    assert.equal(end.s3Writes - start.s3Writes, messages, 'one PUT per message: its raw copy');
    assert.equal(end.s3Reads - start.s3Reads, messages, 'one GET per message: parse reading it');
    const body = tickets.received[0]!.body;
    assert.ok(Buffer.byteLength(body) > 10_000, 'a 10 KB message');
  });
});
