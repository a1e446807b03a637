import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse } from 'aws-lambda';
import { Webhook } from 'standardwebhooks';
import {
  type DeliveryJob,
  type EndpointHealth,
  endpointHealthKey,
  linkPlaceholder,
  METRICS,
  parseConfig,
  type Runtime,
  type WebhookSender,
  webhookId,
} from '../../../core/index.ts';
import {
  createLocalHandlers,
  emulatorClients,
  lambdaContext,
  provisionLocalResources,
  sqsEventFromMessages,
} from '../../../dev/index.ts';
import { createHttpSender, type DeadLetterEntry } from '../../../functions/deliver/index.ts';
import { CapturedMetrics } from '../../../harness/captured-metrics.ts';
import { startTestEmulator, type TestEmulator } from '../../../harness/emulator.ts';
import { webhookPayload } from '../../../harness/webhook-payload.ts';

const SECRET = `whsec_${Buffer.from('the first signing key of this route').toString('base64')}`;
const NEXT_SECRET = `whsec_${Buffer.from('the key that replaces it').toString('base64')}`;

/** What the receiver does with one request. */
type Behaviour = number | { status: number; headers?: Record<string, string> } | 'hang' | 'reset' | 'endless';

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A webhook endpoint on 127.0.0.1 that answers from a script (the last entry repeats). */
class Receiver {
  readonly requests: Received[] = [];
  connections = 0;
  readonly server: Server;
  private readonly script: Behaviour[];
  constructor(script: Behaviour[]) {
    this.script = script;
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.requests.push({ headers: req.headers, body: Buffer.concat(chunks) });
        this.answer(this.script[Math.min(this.requests.length, this.script.length) - 1]!, res);
      });
    });
    this.server.on('connection', () => this.connections++);
  }
  private answer(behaviour: Behaviour, res: ServerResponse) {
    if (behaviour === 'hang') return;
    if (behaviour === 'endless') {
      res.writeHead(200).write(Buffer.alloc(1024 * 1024, 'x'));
      return;
    }
    if (behaviour === 'reset') {
      res.socket?.resetAndDestroy();
      return;
    }
    const { status, headers } =
      typeof behaviour === 'number' ? { status: behaviour, headers: {} } : behaviour;
    res.writeHead(status, headers).end(status >= 300 ? `{"error":"status ${status}"}` : '{"ok":true}');
  }
  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }
  async close() {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

let emulator: TestEmulator;
let pipelines = 0;

before(async () => {
  emulator = await startTestEmulator();
});
after(() => emulator.close());

/**
 * A delivery queue and DLQ of its own, a route to `endpoints`, and the deliver handler over them,
 * with an SQS client that records the calls it makes.
 */
async function pipeline(options: {
  endpoints: string[];
  retrySchedule?: number[];
  timeout?: number;
  secrets?: string[];
  runtime?: Runtime;
  send?: WebhookSender;
  disableAfter?: string | null;
  now?: () => number;
  metrics?: Metrics;
}) {
  pipelines++;
  // A bucket of its own, so endpoint health (kept per URL) never leaks into another test via a reused port.
  const resources = await provisionLocalResources(emulator, {
    bucket: `deliver-test-${pipelines}`,
    inbound: `deliver-test-in-${pipelines}`,
    delivery: `deliver-test-${pipelines}`,
  });
  const { Attributes } = await emulator.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: resources.deliveryQueueUrl, AttributeNames: ['QueueArn'] }),
  );
  const config = parseConfig(
    {
      domains: ['example.test'],
      routes: [
        {
          id: 'support',
          match: ['*@example.test'],
          endpoints: options.endpoints,
          secret: (options.secrets ?? [SECRET]).map((value) => ({ value })),
          retrySchedule: options.retrySchedule ?? [1, 1],
          timeout: options.timeout ?? 5,
          ...(options.disableAfter === undefined ? {} : { disableAfter: options.disableAfter }),
        },
      ],
      listeners: [{ port: 0, mode: 'mx' }],
      health: { port: 0 },
    },
    { source: 'test', runtime: 'local' },
  );
  const { s3, sqs } = emulatorClients(emulator.emulator.endpoint);
  const calls: { command: string; input: Record<string, unknown> }[] = [];
  sqs.middlewareStack.add(
    (next, context) => (args) => {
      calls.push({ command: context.commandName!, input: args.input as Record<string, unknown> });
      return next(args);
    },
    { step: 'initialize' },
  );
  const runtime = options.runtime ?? 'local';
  const route = config.routes[0]!;
  const handler = createLocalHandlers({
    s3,
    sqs,
    resources,
    config,
    secrets: async (r) => r.secret.map((ref) => ('value' in ref ? ref.value : '')),
    runtime,
    ...(options.send ? { send: options.send } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.metrics ? { metrics: () => options.metrics! } : {}),
  }).deliver;

  let jobs = 0;
  return {
    calls,
    bucket: resources.bucket,
    /** Stores a payload (or the payload made for the job's message id) and queues its job; returns the job. */
    async enqueue(
      endpoint = route.endpoints[0]!,
      payload: object | ((messageId: string) => object) = webhookPayload,
    ) {
      jobs++;
      const messageId = `01JDELIVERTEST${String(pipelines).padStart(6, '0')}${String(jobs).padStart(6, '0')}`;
      const key = `payloads/${messageId}/support.json`;
      const body = JSON.stringify(typeof payload === 'function' ? payload(messageId) : payload);
      await emulator.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: body }));
      const job: DeliveryJob = {
        version: 1,
        messageId,
        routeId: route.id,
        endpoint,
        recipients: ['help@example.test'],
        payload: { bucket: resources.bucket, key },
        webhookId: webhookId(messageId, route.id),
      };
      await emulator.sqs.send(
        new SendMessageCommand({ QueueUrl: resources.deliveryQueueUrl, MessageBody: JSON.stringify(job) }),
      );
      return job;
    },
    async enqueueRaw(body: string) {
      await emulator.sqs.send(
        new SendMessageCommand({ QueueUrl: resources.deliveryQueueUrl, MessageBody: body }),
      );
    },
    /** Receives what is visible on the delivery queue, as Lambda's event source mapping would. */
    async receive(waitSeconds = 0): Promise<Message[]> {
      const { Messages } = await emulator.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: resources.deliveryQueueUrl,
          AttributeNames: ['All'],
          MessageAttributeNames: ['All'],
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: waitSeconds,
        }),
      );
      return Messages ?? [];
    },
    run(messages: Message[], context?: Context): Promise<SQSBatchResponse> {
      return handler(sqsEventFromMessages(messages, Attributes!.QueueArn!), context);
    },
    /**
     * Receive-and-run until the queue stays empty for `idleSeconds`; the responses in order. Fails
     * after `timeoutMs`: a job that never leaves the queue is a failure, not a wait.
     */
    async drain(idleSeconds = 4, timeoutMs = 60_000): Promise<SQSBatchResponse[]> {
      const responses: SQSBatchResponse[] = [];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const messages = await this.receive(idleSeconds);
        if (messages.length === 0) return responses;
        if (Date.now() > deadline) throw new Error(`the delivery queue still had jobs after ${timeoutMs} ms`);
        responses.push(await this.run(messages));
      }
    },
    async deadLetters(): Promise<DeadLetterEntry[]> {
      const { Messages } = await emulator.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: resources.deliveryDlqUrl, MaxNumberOfMessages: 10 }),
      );
      return (Messages ?? []).map((message) => JSON.parse(message.Body!) as DeadLetterEntry);
    },
    close() {
      s3.destroy();
      sqs.destroy();
    },
  };
}

async function withReceiver<T>(script: Behaviour[], body: (receiver: Receiver, url: string) => Promise<T>) {
  const receiver = new Receiver(script);
  const port = await receiver.start();
  try {
    return await body(receiver, `http://127.0.0.1:${port}/hooks/mail`);
  } finally {
    await receiver.close();
  }
}

function visibilityChanges(calls: { command: string; input: Record<string, unknown> }[]): unknown[] {
  return calls
    .filter((call) => call.command === 'ChangeMessageVisibilityCommand')
    .map((call) => call.input.VisibilityTimeout);
}

describe('deliver function', () => {
  it('POSTs the stored payload, signed so the standardwebhooks package verifies it', async () => {
    const version = JSON.parse(
      await readFile(new URL('../../../package.json', import.meta.url), 'utf8'),
    ).version;
    await withReceiver([200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url] });
      const payload = (id: string) =>
        webhookPayload(id, { message: { subject: 'Grüße aus Köln', text: '日本語' } });
      const job = await p.enqueue(url, payload);
      const response = await p.run(await p.receive());
      assert.deepEqual(response.batchItemFailures, []);
      assert.equal(receiver.requests.length, 1);
      const { headers, body } = receiver.requests[0]!;
      assert.equal(body.toString('utf8'), JSON.stringify(payload(job.messageId)));
      assert.equal(headers['content-type'], 'application/json');
      assert.equal(headers['user-agent'], `mailbridge/${version}`);
      assert.equal(headers['webhook-id'], job.webhookId);
      assert.ok(Math.abs(Number(headers['webhook-timestamp']) - Date.now() / 1000) < 60);
      assert.deepEqual(
        new Webhook(SECRET).verify(body, headers as Record<string, string>),
        payload(job.messageId),
      );
      assert.deepEqual(await p.deadLetters(), []);
      p.close();
    });
  });

  it('during a key rotation signs with both secrets, and each verifies', async () => {
    await withReceiver([200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], secrets: [SECRET, NEXT_SECRET] });
      await p.enqueue();
      await p.run(await p.receive());
      const { headers, body } = receiver.requests[0]!;
      for (const secret of [SECRET, NEXT_SECRET]) {
        assert.ok(new Webhook(secret).verify(body, headers as Record<string, string>));
      }
      p.close();
    });
  });

  for (const status of [400, 404]) {
    it(`dead-letters a ${status} on the first try, with the status recorded`, async () => {
      await withReceiver([status], async (receiver, url) => {
        const p = await pipeline({ endpoints: [url], retrySchedule: [1, 1, 1] });
        const job = await p.enqueue();
        const response = await p.run(await p.receive());
        assert.deepEqual(response.batchItemFailures, []);
        const [entry, ...more] = await p.deadLetters();
        assert.deepEqual(more, []);
        assert.equal(entry?.webhookId, job.webhookId);
        assert.equal(entry?.reason, 'permanent');
        assert.equal(entry?.lastStatus, status);
        assert.equal(entry?.lastError, `HTTP ${status}: {"error":"status ${status}"}`);
        assert.equal(entry?.attempts, 1);
        assert.equal(receiver.requests.length, 1);
        p.close();
      });
    });
  }

  it('does not follow a redirect: permanent, with the target noted', async () => {
    await withReceiver(
      [{ status: 302, headers: { location: 'http://127.0.0.1:1/elsewhere' } }],
      async (receiver, url) => {
        const p = await pipeline({ endpoints: [url] });
        await p.enqueue();
        await p.run(await p.receive());
        const [entry] = await p.deadLetters();
        assert.equal(entry?.reason, 'permanent');
        assert.equal(entry?.lastStatus, 302);
        assert.match(entry?.lastError ?? '', /redirect to http:\/\/127\.0\.0\.1:1\/elsewhere not followed/);
        assert.equal(receiver.requests.length, 1);
        p.close();
      },
    );
  });

  it('stops at 410 Gone: dead-lettered as gone, never tried again', async () => {
    await withReceiver([410], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [1, 1] });
      await p.enqueue();
      await p.drain(2);
      const [entry] = await p.deadLetters();
      assert.equal(entry?.reason, 'gone');
      assert.equal(entry?.lastStatus, 410);
      assert.equal(receiver.requests.length, 1);
      p.close();
    });
  });

  it('emits each metric with the dimensions core/metric-names.ts declares for it', async () => {
    // The alarms and the dashboard read a metric by the dimension set the vocabulary gives it;
    // CloudWatch keeps one series per set, so another set is a graph that stays empty.
    const metrics = new CapturedMetrics('deliver');
    await withReceiver([500, 204, 410], async (_receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [1], metrics });
      await p.enqueue();
      await p.drain(2);
      await p.enqueue();
      await p.drain(2);
      p.close();
    });
    const seen = metrics.dimensionSets();
    for (const name of ['delivered', 'retried', 'dead_lettered', 'delivery_latency'] as const)
      assert.ok(seen.has(name), `${name} emitted (seen: ${[...seen.keys()].join(', ')})`);
    for (const [name, sets] of seen) {
      const declared = ['service', ...METRICS.deliver[name as keyof typeof METRICS.deliver]].sort().join(',');
      assert.deepEqual([...sets], [declared], name);
    }
  });

  it('retries on its schedule, then dead-letters as exhausted with the attempt count', async () => {
    await withReceiver([500], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [1, 1] });
      const job = await p.enqueue();
      const responses = await p.drain(3);
      assert.deepEqual(
        responses.map((response) => response.batchItemFailures.length),
        [1, 1, 0],
      );
      assert.deepEqual(visibilityChanges(p.calls), [1, 1]);
      const [entry] = await p.deadLetters();
      assert.equal(entry?.webhookId, job.webhookId);
      assert.equal(entry?.reason, 'exhausted');
      assert.equal(entry?.attempts, 3);
      assert.equal(entry?.lastStatus, 500);
      assert.equal(receiver.requests.length, 3);
      assert.equal(new Set(receiver.requests.map((request) => request.headers['webhook-id'])).size, 1);
      p.close();
    });
  });

  it('delivers once after a 500: the retry succeeds and nothing is dead-lettered', async () => {
    await withReceiver([500, 200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [1, 1] });
      await p.enqueue();
      const responses = await p.drain(3);
      assert.deepEqual(
        responses.map((response) => response.batchItemFailures.length),
        [1, 0],
      );
      assert.equal(receiver.requests.length, 2);
      assert.deepEqual(await p.deadLetters(), []);
      p.close();
    });
  });

  it('honours Retry-After: the retry waits the 2 s asked for, not the 1 s scheduled', async () => {
    await withReceiver([{ status: 503, headers: { 'retry-after': '2' } }, 200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [1, 1] });
      await p.enqueue();
      const first = await p.run(await p.receive());
      assert.equal(first.batchItemFailures.length, 1);
      assert.deepEqual(visibilityChanges(p.calls), [2]);
      assert.deepEqual(await p.receive(), [], 'not visible again at once');
      const again = await p.receive(10);
      assert.equal(again.length, 1);
      assert.equal(again[0]!.Attributes!.ApproximateReceiveCount, '2');
      assert.deepEqual((await p.run(again)).batchItemFailures, []);
      assert.equal(receiver.requests.length, 2);
      p.close();
    });
  });

  it('retries a try that times out', async () => {
    await withReceiver(['hang'], async (_receiver, url) => {
      const p = await pipeline({ endpoints: [url], timeout: 1, retrySchedule: [30] });
      await p.enqueue();
      const [message] = await p.receive();
      const response = await p.run([message!]);
      assert.deepEqual(response.batchItemFailures, [{ itemIdentifier: message!.MessageId }]);
      assert.deepEqual(visibilityChanges(p.calls), [30]);
      assert.deepEqual(await p.deadLetters(), []);
      p.close();
    });
  });

  it('bounds a try by the time the invocation has left, not only by the route timeout', async () => {
    await withReceiver(['hang'], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], timeout: 30, retrySchedule: [] });
      await p.enqueue();
      // 12 s left: 10 s are kept to finish the batch, so the try gets 2 s of the route's 30.
      const response = await p.run(
        await p.receive(),
        lambdaContext('mailbridge-deliver', 'us-east-1', 12_000),
      );
      assert.deepEqual(response.batchItemFailures, []);
      const [entry] = await p.deadLetters();
      assert.equal(entry?.reason, 'exhausted');
      const bound = Number(/^no response within (\d+) ms$/.exec(entry?.lastError ?? '')?.[1]);
      assert.ok(bound > 1000 && bound <= 2000, entry?.lastError);
      assert.equal(receiver.requests.length, 1);
      p.close();
    });
  });

  it('retries a connection reset', async () => {
    await withReceiver(['reset'], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], retrySchedule: [30] });
      await p.enqueue();
      const response = await p.run(await p.receive());
      assert.equal(response.batchItemFailures.length, 1);
      assert.deepEqual(visibilityChanges(p.calls), [30]);
      assert.equal(receiver.requests.length, 1);
      p.close();
    });
  });

  it('stops reading a response body at the cap instead of waiting for its end', async () => {
    await withReceiver(['endless'], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url], timeout: 30 });
      await p.enqueue();
      assert.deepEqual((await p.run(await p.receive())).batchItemFailures, []);
      assert.equal(receiver.requests.length, 1);
      p.close();
    });
  });

  it('returns only the bad record of a batch', async () => {
    await withReceiver([200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url] });
      await p.enqueue();
      await p.enqueueRaw('{"not":"a delivery job"}');
      await p.enqueue();
      const messages = await p.receive();
      assert.equal(messages.length, 3);
      const bad = messages.find((message) => message.Body === '{"not":"a delivery job"}')!;
      const response = await p.run(messages);
      assert.deepEqual(response.batchItemFailures, [{ itemIdentifier: bad.MessageId }]);
      assert.equal(receiver.requests.length, 2);
      p.close();
    });
  });

  it('dead-letters a job whose endpoint is no longer on its route', async () => {
    await withReceiver([200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url] });
      await p.enqueue(`${url}/removed`);
      await p.run(await p.receive());
      const [entry] = await p.deadLetters();
      assert.equal(entry?.reason, 'permanent');
      assert.match(entry?.lastError ?? '', /no longer configured/);
      assert.equal(receiver.connections, 0);
      p.close();
    });
  });

  it('dead-letters a stored payload that is not a webhook payload, naming what is wrong, without connecting', async () => {
    await withReceiver([200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url] });
      const notJson = await p.enqueue(url);
      const key = `payloads/${notJson.messageId}/support.json`;
      await emulator.s3.send(new PutObjectCommand({ Bucket: p.bucket, Key: key, Body: '{"truncated' }));
      const wrong = await p.enqueue(url, (id: string) => ({ ...webhookPayload(id), version: 2 }));
      const response = await p.run(await p.receive());
      assert.deepEqual(response.batchItemFailures, [], 'settled: retrying cannot mend a payload');
      const entries = await p.deadLetters();
      const about = (job: DeliveryJob) => entries.find((entry) => entry.messageId === job.messageId);
      assert.equal(about(notJson)?.reason, 'permanent');
      assert.match(about(notJson)?.lastError ?? '', new RegExp(`^payload s3://${p.bucket}/${key} not JSON`));
      assert.equal(about(wrong)?.reason, 'permanent');
      assert.match(about(wrong)?.lastError ?? '', /not a webhook payload: version: /);
      assert.equal(about(wrong)?.attempts, 0);
      assert.equal(receiver.connections, 0);
      p.close();
    });
  });
});

describe('deliver function SSRF guard', () => {
  /** A resolver that says every name is `address`, as a hostile DNS server would. */
  function resolvingTo(address: string, asked: string[]): LookupFunction {
    return (hostname, options, callback) => {
      asked.push(hostname);
      const family = address.includes(':') ? 6 : 4;
      if (options.all) callback(null, [{ address, family }]);
      else callback(null, address, family);
    };
  }

  it('in AWS refuses loopback, private, link-local, metadata and disguised addresses without connecting', async () => {
    await withReceiver([200], async (receiver, url) => {
      const port = new URL(url).port;
      const asked: string[] = [];
      const endpoints = [
        `https://127.0.0.1:${port}/`,
        `https://[::1]:${port}/`,
        `https://[::ffff:127.0.0.1]:${port}/`,
        `https://2130706433:${port}/`,
        `https://0x7f000001:${port}/`,
        `https://hooks.example.test:${port}/`,
        `http://127.0.0.1:${port}/`,
        'https://10.0.0.1/',
        'https://172.16.5.4/',
        'https://192.168.1.1/',
        'https://169.254.169.254/latest/meta-data/',
        'https://[fd00:ec2::254]/',
        'https://100.64.0.1/',
        'https://224.0.0.1/',
        'https://0.0.0.0/',
        'https://[fe80::1]/',
        'https://[fc00::1]/',
      ];
      const p = await pipeline({
        endpoints,
        runtime: 'aws',
        send: createHttpSender({ runtime: 'aws', lookup: resolvingTo('127.0.0.1', asked) }),
      });
      for (const endpoint of endpoints) await p.enqueue(endpoint);
      const messages = [...(await p.receive()), ...(await p.receive())];
      assert.equal(messages.length, endpoints.length);
      for (let i = 0; i < messages.length; i += 10) {
        assert.deepEqual((await p.run(messages.slice(i, i + 10))).batchItemFailures, []);
      }
      const entries = [...(await p.deadLetters()), ...(await p.deadLetters())];
      assert.deepEqual(entries.map((entry) => entry.endpoint).sort(), [...endpoints].sort());
      for (const entry of entries) {
        assert.equal(entry.reason, 'blocked', entry.endpoint);
        assert.equal(entry.attempts, 1);
      }
      assert.deepEqual(asked, ['hooks.example.test'], 'the name was resolved, and its address refused');
      assert.equal(receiver.connections, 0);
      p.close();
    });
  });

  it('locally allows loopback only: a name resolving to a private address is refused', async () => {
    const asked: string[] = [];
    const endpoints = ['https://hooks.example.test/', 'https://10.0.0.1/', 'https://169.254.169.254/'];
    const p = await pipeline({
      endpoints,
      send: createHttpSender({ runtime: 'local', lookup: resolvingTo('10.1.2.3', asked) }),
    });
    for (const endpoint of endpoints) await p.enqueue(endpoint);
    await p.run(await p.receive());
    const entries = await p.deadLetters();
    assert.deepEqual(
      entries.map((entry) => entry.reason),
      ['blocked', 'blocked', 'blocked'],
    );
    assert.deepEqual(asked, ['hooks.example.test']);
    p.close();
  });
});

describe('deliver function endpoint health', () => {
  const HOUR = 3600_000;
  const START = Date.parse('2026-11-20T10:00:00Z');

  /** A pipeline that disables its endpoint after 1 h of failures, on a clock the test moves. */
  async function clocked(url: string) {
    const clock = { now: START };
    const p = await pipeline({
      endpoints: [url],
      disableAfter: '1h',
      retrySchedule: [1, 1],
      now: () => clock.now,
    });
    return { p, clock };
  }

  async function storedHealth(
    bucket: string,
    endpoint: string,
  ): Promise<EndpointHealth & { endpoint: string }> {
    const object = await emulator.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: endpointHealthKey(endpoint) }),
    );
    return JSON.parse(await object.Body!.transformToString());
  }

  it('after a 410 Gone parks the next job for that endpoint without connecting', async () => {
    await withReceiver([410, 200], async (receiver, url) => {
      const p = await pipeline({ endpoints: [url] });
      await p.enqueue();
      await p.run(await p.receive());
      const parked = await p.enqueue();
      assert.deepEqual((await p.run(await p.receive())).batchItemFailures, []);
      const entries = await p.deadLetters();
      assert.deepEqual(
        entries.map((entry) => entry.reason),
        ['gone', 'parked'],
      );
      const entry = entries[1]!;
      assert.equal(entry.webhookId, parked.webhookId);
      assert.equal(entry.attempts, 0);
      assert.match(entry.lastError ?? '', /^endpoint disabled since \S+ because 410 Gone: HTTP 410/);
      assert.equal(receiver.connections, 1);
      assert.equal(receiver.requests.length, 1);
      const health = await storedHealth(p.bucket, url);
      assert.equal(health.endpoint, url);
      assert.ok(health.disabledAt);
      p.close();
    });
  });

  it('disables an endpoint that failed every try for longer than disableAfter, and parks its jobs', async () => {
    await withReceiver([500], async (receiver, url) => {
      const { p, clock } = await clocked(url);
      await p.enqueue();
      assert.equal((await p.run(await p.receive())).batchItemFailures.length, 1, 'first failure: retried');
      assert.equal((await storedHealth(p.bucket, url)).firstFailureAt, new Date(START).toISOString());
      clock.now = START + 2 * HOUR;
      const again = await p.receive(5);
      assert.deepEqual((await p.run(again)).batchItemFailures, [], 'failing for 2 h: parked, not retried');
      await p.enqueue();
      await p.run(await p.receive());
      const entries = await p.deadLetters();
      assert.deepEqual(
        entries.map((entry) => [entry.reason, entry.attempts, entry.lastStatus]),
        [
          ['parked', 2, 500],
          ['parked', 0, undefined],
        ],
      );
      assert.equal(receiver.requests.length, 2, 'the job after the disable was not sent');
      const health = await storedHealth(p.bucket, url);
      assert.equal(health.disabledAt, new Date(START + 2 * HOUR).toISOString());
      assert.match(
        health.reason ?? '',
        /^every try failed for 1h \(since 2026-11-20T10:00:00\.000Z\); last: HTTP 500/,
      );
      p.close();
    });
  });

  it('a success ends the run of failures, so a later failure starts a new one', async () => {
    await withReceiver([500, 200, 500], async (receiver, url) => {
      const { p, clock } = await clocked(url);
      await p.enqueue();
      await p.run(await p.receive());
      clock.now = START + HOUR / 2;
      assert.deepEqual((await p.run(await p.receive(5))).batchItemFailures, []);
      const recovered = await storedHealth(p.bucket, url);
      assert.equal(recovered.firstFailureAt, null);
      assert.equal(recovered.lastSuccessAt, new Date(clock.now).toISOString());
      clock.now = START + 2 * HOUR;
      await p.enqueue();
      assert.equal((await p.run(await p.receive())).batchItemFailures.length, 1, 'retried, not parked');
      assert.deepEqual(await p.deadLetters(), []);
      const health = await storedHealth(p.bucket, url);
      assert.equal(health.disabledAt, null);
      assert.equal(health.firstFailureAt, new Date(clock.now).toISOString());
      assert.equal(receiver.requests.length, 3);
      p.close();
    });
  });
});

describe('deliver function links', () => {
  /** The signing time of a SigV4 presigned URL, as milliseconds since the epoch. */
  const signedAt = (url: string) => {
    const date = new URL(url).searchParams.get('X-Amz-Date')!;
    return Date.parse(date.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  };

  it('signs the payload links again at each try: a retry carries links of its own time that download', async () => {
    await withReceiver([500, 200], async (receiver, url) => {
      const second = Math.floor(Date.now() / 1000) * 1000;
      // The first try 7 h earlier: links signed then are past the 6 h they were given.
      const first = second - 7 * 3600_000;
      let clock = first;
      const p = await pipeline({ endpoints: [url], now: () => clock });
      const objects = (messageId: string) => ({
        raw: { bucket: p.bucket, key: `raw/2026/11/20/${messageId}.eml` },
        attachment: { bucket: p.bucket, key: `attachments/${messageId}/0-report.pdf` },
        // Not this message's: a payload may not get links to it signed.
        other: { bucket: p.bucket, key: 'attachments/01JOTHERMESSAGE/0-secret.pdf' },
      });
      const file = (filename: string, contentType: string) => ({
        filename,
        contentType,
        size: 15,
        sha256: 'a'.repeat(64),
        disposition: 'attachment',
        contentId: null,
      });
      const payload = (messageId: string) => {
        const { raw, attachment, other } = objects(messageId);
        return webhookPayload(messageId, {
          message: {
            subject: 'the link "url":"s3://x/y" in a subject stays text',
            attachments: [
              { ...file('report.pdf', 'application/pdf'), url: linkPlaceholder(attachment) },
              { ...file('logo.png', 'image/png'), content: 'iVBORw0KGgo=' },
              { ...file('secret.pdf', 'application/pdf'), url: linkPlaceholder(other) },
            ],
          },
          raw: { size: 20, url: linkPlaceholder(raw) },
        });
      };
      const job = await p.enqueue(url, payload);
      const { raw, attachment } = objects(job.messageId);
      await emulator.s3.send(
        new PutObjectCommand({ Bucket: raw.bucket, Key: raw.key, Body: 'Subject: hi\r\n\r\nhi\r\n' }),
      );
      await emulator.s3.send(
        new PutObjectCommand({ Bucket: attachment.bucket, Key: attachment.key, Body: '%PDF-1.7 report' }),
      );
      assert.equal((await p.run(await p.receive())).batchItemFailures.length, 1);
      clock = second;
      assert.deepEqual((await p.run(await p.receive(5))).batchItemFailures, []);

      type Sent = ReturnType<typeof payload> & {
        message: { attachments: { url?: string; content?: string }[] };
      };
      const [tried, delivered] = receiver.requests.map(
        (request) => JSON.parse(request.body.toString('utf8')) as Sent,
      );
      const expected = payload(job.messageId);
      assert.equal(signedAt(tried!.raw.url), first);
      assert.equal(signedAt(delivered!.raw.url), second);
      assert.equal(signedAt(delivered!.message.attachments[0]!.url!), second);
      assert.deepEqual(delivered!.message.attachments[1], expected.message.attachments[1]);
      assert.deepEqual(delivered!.message.attachments[2], expected.message.attachments[2]);
      assert.equal(delivered!.message.subject, expected.message.subject);
      assert.equal(delivered!.raw.size, 20);
      const { headers, body } = receiver.requests[1]!;
      assert.equal(headers['webhook-id'], receiver.requests[0]!.headers['webhook-id']);
      assert.ok(
        new Webhook(SECRET).verify(body, headers as Record<string, string>),
        'signed over the new body',
      );
      assert.equal(await (await fetch(delivered!.raw.url)).text(), 'Subject: hi\r\n\r\nhi\r\n');
      assert.equal(await (await fetch(delivered!.message.attachments[0]!.url!)).text(), '%PDF-1.7 report');
      p.close();
    });
  });
});
