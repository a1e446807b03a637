import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { inspectLocal } from '../../cli/queue.ts';
import type { TimelineEvent } from '../../core/control/index.ts';
import { type InboundEvent, newMessageId, rawObjectKey } from '../../core/index.ts';
import { type InboxEntry, type LocalRuntime, startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { noDns } from '../../harness/dns-zone.ts';
import { jsonLines, runCli, startCli } from './helpers.ts';

const execFileAsync = promisify(execFile);
const SECRET = 'whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1jbGktdGVzdHM=';
const ALL_PORTS_FREE = { smtp: 0, submission: 0, smtps: 0, inbox: 0, health: 0, emulator: 0, api: 0 };

interface Payload {
  id: string;
  route: { id: string };
  message: {
    subject: string;
    headers: { name: string; value: string }[];
    attachments: { filename: string }[];
  };
}

/** A webhook endpoint on 127.0.0.1 that refuses every request until `accepts` is set. */
interface RefusingEndpoint {
  readonly url: string;
  /** The webhook-id of every request. */
  readonly received: string[];
  accepts: boolean;
  close(): void;
}

async function startRefusingEndpoint(status: number, text: string): Promise<RefusingEndpoint> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      endpoint.received.push(String(request.headers['webhook-id']));
      response.writeHead(endpoint.accepts ? 204 : status).end(endpoint.accepts ? '' : text);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const endpoint: RefusingEndpoint = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received: [],
    accepts: false,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
  return endpoint;
}

describe('mailbridge CLI against the local runtime', () => {
  let runtime: LocalRuntime;
  let dir: string;
  let env: Record<string, string>;
  let mx: string;
  let submission: string;
  // The `flaky` route's endpoint refuses with 400, the `retired` one answers 410 Gone, until told to accept.
  let flaky: RefusingEndpoint;
  let retired: RefusingEndpoint;

  /** The first dev-inbox webhook matching `test`, polled until it arrives. */
  async function webhookWhere(test: (payload: Payload, entry: InboxEntry) => boolean): Promise<InboxEntry> {
    for (let waited = 0; waited < 20_000; waited += 100) {
      const found = runtime.inbox.entries.find((entry) => test(JSON.parse(entry.body) as Payload, entry));
      if (found) return found;
      await sleep(100);
    }
    throw new Error('no such webhook in the dev inbox');
  }

  /** The message's timeline as `GET /v1/messages/{id}` answers it, through the CLI. */
  async function timelineOf(id: string): Promise<TimelineEvent[]> {
    const shown = await runCli(['messages', 'show', id, '--json'], { env });
    assert.equal(shown.code, 0, shown.stderr);
    return (JSON.parse(shown.stdout) as { timeline: TimelineEvent[] }).timeline;
  }

  /** Its `retried` and `replayed` events, without their times. */
  async function requeuedEvents(id: string): Promise<Record<string, unknown>[]> {
    return (await timelineOf(id))
      .filter((event) => event.type === 'retried' || event.type === 'replayed')
      .map(({ at: _at, ...event }) => event);
  }

  /** A message stored as the listener stores it, and the InboundEvent it would queue for `rcptTo`. */
  async function storedMessage(rcptTo: string): Promise<{ id: string; body: string }> {
    const id = newMessageId();
    const receivedAt = new Date();
    const raw = await readFile(
      join(import.meta.dirname, '..', '..', 'harness', 'fixtures', 'mail', '01-plain-ascii.eml'),
    );
    const key = rawObjectKey(id, receivedAt);
    await runtime.s3.send(new PutObjectCommand({ Bucket: runtime.resources.bucket, Key: key, Body: raw }));
    const event: InboundEvent = {
      version: 1,
      id,
      receivedAt: receivedAt.toISOString(),
      raw: {
        bucket: runtime.resources.bucket,
        key,
        size: raw.length,
        sha256: createHash('sha256').update(raw).digest('hex'),
      },
      envelope: {
        mailFrom: 'ann@sender.test',
        rcptTo: [rcptTo],
        helo: 'sender.test',
        remoteAddress: '127.0.0.1',
        remotePort: 40000,
        localPort: 2525,
        tls: null,
        authUser: null,
      },
    };
    return { id, body: JSON.stringify(event) };
  }

  before(async () => {
    flaky = await startRefusingEndpoint(400, 'bad request');
    retired = await startRefusingEndpoint(410, 'endpoint removed');
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-cli-'));
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'dev-inbox',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: SECRET },
          attachments: { mode: 'inline' },
        },
        {
          id: 'flaky',
          match: ['flaky@example.test'],
          endpoints: [flaky.url],
          secret: { value: SECRET },
        },
        {
          id: 'retired',
          match: ['retired@example.test'],
          endpoints: [retired.url],
          secret: { value: SECRET },
        },
      ],
      listeners: [
        { host: '127.0.0.1', port: 0, mode: 'mx' },
        { host: '127.0.0.1', port: 0, mode: 'submission' },
      ],
      health: { host: '127.0.0.1', port: 0 },
      auth: { users: [{ user: 'dev', password: { value: 'dev-password' } }] },
    });
    runtime = await startLocalRuntime({
      configFile,
      dataDir: join(dir, 'data'),
      ports: ALL_PORTS_FREE,
      resolver: noDns,
      pollWaitSeconds: 1,
    });
    // As after `npm start -- --config FILE`: the commands find the runtime, its config and its
    // ports through its data folder alone.
    env = { MAILBRIDGE_DATA_DIR: join(dir, 'data') };
    const port = (mode: string) => runtime.listener.listeners.find((l) => l.mode === mode)!.port;
    mx = `127.0.0.1:${port('mx')}`;
    submission = `127.0.0.1:${port('submission')}`;
  });

  after(async () => {
    await runtime?.close();
    flaky?.close();
    retired?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows --help for every command and exits 0', async () => {
    const commands = [
      ['dev'],
      ['send'],
      ['routes', 'check'],
      ['dlq', 'list'],
      ['dlq', 'show'],
      ['dlq', 'redrive'],
      ['replay'],
      ['tail'],
      ['verify'],
      ['messages', 'list'],
      ['messages', 'show'],
      ['messages', 'retry'],
      ['messages', 'release'],
      ['refusals', 'list'],
      ['routes', 'list'],
      ['routes', 'add'],
      ['routes', 'rm'],
      ['domains', 'list'],
      ['domains', 'add'],
      ['domains', 'verify'],
      ['domains', 'rm'],
      ['keys', 'create'],
      ['keys', 'list'],
      ['keys', 'revoke'],
    ];
    const results = await Promise.all(commands.map((command) => runCli([...command, '--help'])));
    results.forEach((result, index) => {
      assert.equal(result.code, 0, commands[index]!.join(' '));
      assert.match(result.stdout, new RegExp(`Usage: mailbridge ${commands[index]!.join(' ')}`));
    });
  });

  it('exits 2 on usage errors', async () => {
    const [unknown, noFilter, badCount] = await Promise.all([
      runCli(['send', '--nope']),
      runCli(['dlq', 'redrive'], { env }),
      runCli(['send', '--count', 'many']),
    ]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--nope'/);
    assert.equal(noFilter.code, 2);
    assert.match(noFilter.stderr, /exactly one of --all, --message-id or --route/);
    assert.equal(badCount.code, 2);
  });

  it('send: N copies with concurrency, each answered "queued as <id>", each delivered', async () => {
    const result = await runCli([
      'send',
      '--server',
      mx,
      '--to',
      'many@example.test',
      '--subject',
      'copies',
      '--count',
      '3',
      '--concurrency',
      '2',
      '--json',
    ]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const sent = JSON.parse(result.stdout) as { ok: boolean; response: string; queuedAs: string }[];
    assert.equal(sent.length, 3);
    for (const one of sent) {
      assert.equal(one.ok, true);
      assert.match(one.response, /^250 2\.0\.0 queued as [0-9A-Z]{26}$/);
      await webhookWhere((payload) => payload.id === one.queuedAs);
    }
  });

  it('send: STARTTLS + AUTH on the submission port, with an attachment and a custom header', async () => {
    const file = join(dir, 'notes.txt');
    await writeFile(file, 'attached words');
    const result = await runCli([
      'send',
      '--server',
      submission,
      '--starttls',
      '--auth',
      'dev:dev-password',
      '--to',
      'auth@example.test',
      '--attach',
      file,
      '--header',
      'X-Ticket: 42',
    ]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const id = /^1\/1 250 2\.0\.0 queued as (\S+)$/m.exec(result.stdout)?.[1];
    assert.ok(id, result.stdout);
    const entry = await webhookWhere((payload) => payload.id === id);
    const payload = JSON.parse(entry.body) as Payload;
    assert.deepEqual(
      payload.message.attachments.map((a) => a.filename),
      ['notes.txt'],
    );
    assert.ok(payload.message.headers.some((h) => h.name.toLowerCase() === 'x-ticket' && h.value === '42'));
  });

  it("the README's swaks command delivers the attachment under its file name", async () => {
    const readme = await readFile(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const line = /^swaks --server 127\.0\.0\.1:2525 .*--attach.*$/m.exec(readme)?.[0];
    assert.ok(line, 'the README shows how to send an attachment with swaks');
    await writeFile(join(dir, 'some.pdf'), '%PDF-1.4\n% a test document\n');
    // As typed in a shell (no quoting in that line), on this runtime's MX port, next to some.pdf.
    const args = line
      .split(/\s+/)
      .slice(1)
      .map((arg) => (arg === '127.0.0.1:2525' ? mx : arg));
    const { stdout } = await execFileAsync('swaks', args, { cwd: dir });
    const id = /queued as ([0-9A-Z]{26})/.exec(stdout)?.[1];
    assert.ok(id, stdout);
    const payload = JSON.parse((await webhookWhere((sent) => sent.id === id)).body) as Payload;
    assert.deepEqual(
      payload.message.attachments.map((a) => a.filename),
      ['some.pdf'],
    );
  });

  it('send: a refused recipient prints the SMTP reply and exits 1', async () => {
    const result = await runCli(['send', '--server', mx, '--to', 'someone@elsewhere.test']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /550 5\.7\.1/);
  });

  it('tail, dlq list/show/redrive: a failed delivery is followed, explained and redriven', async () => {
    const tail = await startCli(
      ['tail', '--json', '--count', '3', '--timeout', '30', '--interval', '0.2'],
      'following',
      { env },
    );
    const sent = await runCli([
      'send',
      '--server',
      mx,
      '--to',
      'tailed@example.test',
      '--to',
      'flaky@example.test',
      '--json',
    ]);
    assert.equal(sent.code, 0, sent.stderr + sent.stdout);
    const id = (JSON.parse(sent.stdout) as { queuedAs: string }[])[0]!.queuedAs;
    const tailed = await tail.done;
    assert.equal(tailed.code, 0, tailed.stderr);
    const lines = jsonLines(tailed.stdout);
    // Every delivery and failure, whatever the endpoint: not only those of the dev inbox.
    assert.deepEqual(lines.map((line) => line.kind).sort(), ['accepted', 'delivered', 'failed']);
    assert.ok(lines.every((line) => line.messageId === id));
    const failed = lines.find((line) => line.kind === 'failed')!;
    assert.equal(failed.routeId, 'flaky');
    assert.equal(failed.endpoint, flaky.url);
    assert.equal(failed.reason, 'permanent');
    assert.equal(failed.status, 400);
    assert.equal(lines.find((line) => line.kind === 'delivered')!.routeId, 'dev-inbox');

    const listed = await runCli(['dlq', 'list', '--json'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const items = JSON.parse(listed.stdout) as Record<string, unknown>[];
    const item = items.find((entry) => entry.messageId === id);
    assert.ok(item, listed.stdout);
    assert.equal(item.queue, 'delivery-dlq');
    assert.equal(item.routeId, 'flaky');
    assert.equal(item.reason, 'permanent');
    assert.equal(item.lastStatus, 400);
    assert.equal(item.attempts, 1);
    assert.match(String(item.lastError), /HTTP 400: bad request/);

    const shown = await runCli(['dlq', 'show', id], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /reason\s+permanent/);
    const missing = await runCli(['dlq', 'show', '01ARZ3NDEKTSV4RRFFQ69G5FAV'], { env });
    assert.equal(missing.code, 1);

    flaky.accepts = true;
    const before = flaky.received.length;
    const redriven = await runCli(['dlq', 'redrive', '--route', 'flaky', '--json'], { env });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.deepEqual(
      (JSON.parse(redriven.stdout) as { redriven: { messageId: string }[] }).redriven.map((r) => r.messageId),
      [id],
    );
    const failedJob = { route: 'flaky', endpoint: flaky.url, webhookId: String(failed.webhookId) };
    assert.deepEqual(await requeuedEvents(id), [
      { type: 'retried', by: 'cli', route: 'flaky', jobs: [failedJob] },
    ]);
    for (let waited = 0; flaky.received.length === before && waited < 20_000; waited += 100) await sleep(100);
    assert.equal(flaky.received.length, before + 1);
    const empty = await runCli(['dlq', 'list', '--queue', 'delivery', '--json'], { env });
    assert.deepEqual(JSON.parse(empty.stdout), []);
    const nothing = await runCli(['dlq', 'redrive', '--route', 'flaky'], { env });
    assert.equal(nothing.code, 1);
  });

  it('dlq: an inbound event that parse gave up on is listed and redriven to be parsed again', async () => {
    const { id, body } = await storedMessage('dead@example.test');
    // Where SQS puts it after maxReceiveCount failed parses.
    await runtime.sqs.send(
      new SendMessageCommand({ QueueUrl: runtime.resources.inboundDlqUrl, MessageBody: body }),
    );
    const listed = await runCli(['dlq', 'list', '--queue', 'inbound'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`inbound-dlq: 1 entry\\n  ${id} .*dead@example\\.test.*parse-failed`),
    );
    const redriven = await runCli(['dlq', 'redrive', '--message-id', id], { env });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.match(redriven.stdout, /redrove 1 entry/);
    await webhookWhere((payload) => payload.id === id);
    assert.deepEqual(await requeuedEvents(id), [{ type: 'retried', by: 'cli', route: null, jobs: [] }]);
  });

  it('dlq: a message parse dead-lettered as unrouted shows why; its redrive is logged', async () => {
    // No route takes the recipient now (as after a route's removal).
    const { id, body } = await storedMessage('gone@elsewhere.test');
    await runtime.sqs.send(
      new SendMessageCommand({ QueueUrl: runtime.resources.inboundQueueUrl, MessageBody: body }),
    );
    let item: Record<string, unknown> | undefined;
    for (let waited = 0; !item && waited < 20_000; waited += 200) {
      const listed = await runCli(['dlq', 'list', '--queue', 'inbound', '--json'], { env });
      assert.equal(listed.code, 0, listed.stderr);
      item = (JSON.parse(listed.stdout) as Record<string, unknown>[]).find((entry) => entry.messageId === id);
      if (!item) await sleep(200);
    }
    assert.ok(item, 'parse dead-lettered it');
    assert.equal(item.reason, 'unrouted');
    assert.match(String(item.lastError), /no route matches gone@elsewhere\.test/);
    assert.deepEqual(item.recipients, ['gone@elsewhere.test']);
    const shown = await runCli(['dlq', 'show', id], { env });
    assert.match(shown.stdout, /reason\s+unrouted/);

    const redriven = await runCli(['dlq', 'redrive', '--message-id', id], { env });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.deepEqual(await requeuedEvents(id), [{ type: 'retried', by: 'cli', route: null, jobs: [] }]);
  });

  it('replay: parses the stored message again, same webhook-id, or a new one with --new-id', async () => {
    const sent = await runCli([
      'send',
      '--server',
      mx,
      '--to',
      'replay@example.test',
      '--subject',
      'again',
      '--json',
    ]);
    const id = (JSON.parse(sent.stdout) as { queuedAs: string }[])[0]!.queuedAs;
    const first = await webhookWhere((payload) => payload.id === id);
    const webhookId = String(first.headers['webhook-id']);

    // No --config: the one the runtime runs, whose dev-inbox endpoint is on the inbox's real port.
    const replayed = await runCli(['replay', id, '--json'], { env });
    assert.equal(replayed.code, 0, replayed.stderr);
    const result = JSON.parse(replayed.stdout) as {
      replayedAs: string;
      envelopeSource: string;
      jobs: { webhookId: string; endpoint: string }[];
    };
    assert.equal(result.replayedAs, id);
    assert.deepEqual(await requeuedEvents(id), [{ type: 'replayed', by: 'cli', route: null }]);
    assert.deepEqual(
      result.jobs.map((job) => job.endpoint),
      [`${runtime.inbox.url}/webhooks`],
    );
    // A typical payload rides in its job, so no stored payload names the envelope; the trace header does.
    assert.equal(result.envelopeSource, 'Received header');
    assert.deepEqual(
      result.jobs.map((job) => job.webhookId),
      [webhookId],
    );
    await webhookWhere((payload, entry) => payload.id === id && entry !== first);

    const renewed = await runCli(['replay', id, '--new-id', '--route', 'dev-inbox', '--json'], {
      env,
    });
    assert.equal(renewed.code, 0, renewed.stderr);
    const fresh = JSON.parse(renewed.stdout) as { replayedAs: string; jobs: { webhookId: string }[] };
    assert.notEqual(fresh.replayedAs, id);
    assert.notEqual(fresh.jobs[0]!.webhookId, webhookId);
    assert.deepEqual(await requeuedEvents(fresh.replayedAs), [
      { type: 'replayed', by: 'cli', route: 'dev-inbox' },
    ]);
    const again = await webhookWhere((payload) => payload.id === fresh.replayedAs);
    assert.equal((JSON.parse(again.body) as Payload).message.subject, 'again');
    assert.equal(again.signatureValid, true);

    const [unknownRoute, unknownMessage] = await Promise.all([
      runCli(['replay', id, '--route', 'nope'], { env }),
      runCli(['replay', newMessageId()], { env }),
    ]);
    assert.equal(unknownRoute.code, 2);
    assert.equal(unknownMessage.code, 1);
    assert.match(unknownMessage.stderr, /no raw message/);
  });
  it('routes check shows an endpoint disabled by 410 Gone; dlq redrive re-enables it and replays its parked jobs', async () => {
    const endpoint = retired.url;
    const deadLetters = async (count: number) => {
      for (let waited = 0; waited < 20_000; waited += 100) {
        const messages = await inspectLocal(runtime.emulator.endpoint, runtime.resources.deliveryDlqUrl);
        const entries = messages
          .map((message) => JSON.parse(message.Body!) as { endpoint: string; reason: string })
          .filter((entry) => entry.endpoint === endpoint);
        if (entries.length >= count) return entries;
        await sleep(100);
      }
      throw new Error(`fewer than ${count} DLQ entries for ${endpoint}`);
    };
    const send = async () => {
      const sent = await runCli(['send', '--server', mx, '--to', 'retired@example.test', '--json']);
      assert.equal(sent.code, 0, sent.stderr + sent.stdout);
    };
    await send();
    await deadLetters(1);
    await send();
    assert.deepEqual(
      (await deadLetters(2)).map((entry) => entry.reason),
      ['gone', 'parked'],
    );
    assert.equal(retired.received.length, 1, 'the job after the 410 was parked without a request');

    // No --config: the routes of the running runtime (`retired` is not in the default config).
    const checked = await runCli(['routes', 'check', 'retired@example.test'], { env });
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(
      checked.stdout,
      new RegExp(`retired@example\\.test → route retired → ${endpoint} \\(disabled\\)`),
    );
    assert.match(
      checked.stdout,
      new RegExp(`^  ${endpoint}\\s+disabled since \\S+Z because 410 Gone: HTTP 410: endpoint removed$`, 'm'),
    );
    const asJson = await runCli(['routes', 'check', '--json'], { env });
    const { health } = JSON.parse(asJson.stdout) as { health: { endpoint: string; status: string }[] };
    assert.equal(health.find((entry) => entry.endpoint === endpoint)?.status, 'disabled');
    assert.equal(health.find((entry) => entry.endpoint !== endpoint)?.status, 'enabled');

    retired.accepts = true;
    const redriven = await runCli(['dlq', 'redrive', '--route', 'retired'], { env });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.match(
      redriven.stdout,
      new RegExp(`^re-enabled ${endpoint} \\(disabled since \\S+ because 410 Gone`, 'm'),
    );
    assert.match(redriven.stdout, /redrove 2 entries/);
    for (let waited = 0; retired.received.length < 3 && waited < 20_000; waited += 100) await sleep(100);
    assert.equal(retired.received.length, 3, 'both jobs delivered after the re-enable');
    const after = await runCli(['routes', 'check', 'retired@example.test'], { env });
    assert.match(after.stdout, new RegExp(`^  ${endpoint}\\s+enabled$`, 'm'));
  });
});
