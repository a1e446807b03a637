import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import {
  INVOCATION_MARGIN_MS,
  WEBHOOK_PAYLOAD_SCHEMA_PATH,
  type WebhookPayload,
  webhookId,
  webhookPayloadJsonSchema,
} from '../../../core/index.ts';
import { lambdaContext } from '../../../dev/index.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function messageWithAttachments(small: Buffer, big: Buffer): string {
  return [
    'From: Alice <alice@sender.test>',
    'To: support@example.test, sales@example.test',
    'Subject: Files',
    'Message-ID: <files-1@sender.test>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="B"',
    '',
    '--B',
    'Content-Type: text/plain',
    '',
    'Two files.',
    '--B',
    'Content-Type: image/png',
    'Content-Disposition: attachment; filename="small.png"',
    'Content-Transfer-Encoding: base64',
    '',
    small.toString('base64'),
    '--B',
    'Content-Type: application/zip',
    'Content-Disposition: attachment; filename="../../etc/big archive.zip"',
    'Content-Transfer-Encoding: base64',
    '',
    big.toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--B--',
    '',
  ].join('\r\n');
}

describe('parse handler', () => {
  let h: ParseHarness;
  before(async () => {
    h = await startParseHarness();
  });
  after(() => h.close());

  it('sends one job per route endpoint with deterministic webhook ids, the same on a re-run', async () => {
    const event = await h.store(await h.fixture('01-plain-ascii.eml'), {
      rcptTo: [
        'support@example.test',
        'billing@example.test',
        'sales@example.test',
        'ticket+ab12@example.test',
      ],
    });
    const parse = h.handler();
    assert.deepEqual(await parse(sqsEvent([event])), { batchItemFailures: [] });
    const first = await h.drainJobs();
    assert.deepEqual(first.map((job) => `${job.routeId} ${job.endpoint}`).sort(), [
      'billing https://audit.app.test/billing',
      'billing https://hooks.app.test/billing',
      'sales https://hooks.app.test/sales',
      'support https://hooks.app.test/support',
    ]);
    for (const job of first) {
      assert.equal(job.webhookId, webhookId(event.id, job.routeId));
      assert.ok('inline' in job.payload, 'a small payload travels inside its job');
    }
    const support = first.find((job) => job.routeId === 'support')!;
    assert.deepEqual(support.recipients, ['support@example.test', 'ticket+ab12@example.test']);
    const payload = await h.payload(support);
    assert.deepEqual(payload.route, {
      id: 'support',
      recipients: support.recipients,
      recipientDetails: [
        { address: 'support@example.test', mailboxHash: null },
        { address: 'ticket+ab12@example.test', mailboxHash: 'ab12' },
      ],
    });
    assert.deepEqual(
      payload.envelope.rcptTo,
      support.recipients,
      'other routes’ recipients are not disclosed',
    );
    assert.equal(payload.message.mailboxHash, null);

    await parse(sqsEvent([event]));
    const second = await h.drainJobs();
    const ids = (jobs: typeof first) =>
      jobs.map((job) => `${job.webhookId} ${job.endpoint} ${JSON.stringify(job.payload)}`).sort();
    assert.deepEqual(ids(second), ids(first));
  });

  it('takes mailboxHash from the route recipient’s plus tag', async () => {
    const event = await h.store(await h.fixture('01-plain-ascii.eml'), {
      rcptTo: ['ticket+ab12@example.test'],
    });
    await h.handler()(sqsEvent([event]));
    const [job] = await h.drainJobs();
    assert.equal((await h.payload(job!)).message.mailboxHash, 'ab12');
  });

  it('reports only the failing records of a batch', async () => {
    const good = await h.store(await h.fixture('02-alternative.eml'));
    const missingRaw = {
      ...(await h.store('Subject: x\r\n\r\ny\r\n')),
      raw: { ...good.raw, key: 'raw/nope.eml' },
    };
    const event = sqsEvent([good, 'not json', { version: 1, id: 'nope' }, missingRaw]);
    const result = await h.handler()(event);
    assert.deepEqual(
      result.batchItemFailures.map((failure) => failure.itemIdentifier),
      event.Records.slice(1).map((record) => record.messageId),
    );
    const jobs = await h.drainJobs();
    assert.deepEqual(
      jobs.map((job) => job.messageId),
      [good.id],
    );
  });

  it('gives up the records still running shortly before the function times out, and reports only them', async () => {
    // DNS for slow.test never answers, and nothing else bounds the wait: only the time left does.
    const resolver = (name: string) =>
      name.endsWith('slow.test')
        ? new Promise<never>(() => {})
        : Promise.reject(Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' }));
    const parse = h.handler({
      resolver,
      dns: { timeoutMs: 600_000 },
      auth: { deadlineMs: 600_000, maxKeyLookups: 10 },
    });
    const message = await h.fixture('01-plain-ascii.eml');
    const [quick, stuck, alsoQuick] = [
      await h.store(message),
      await h.store(message, { mailFrom: 'someone@slow.test' }),
      await h.store(message),
    ];
    const event = sqsEvent([quick, stuck, alsoQuick]);
    // 1.5 s left once the margin the handler keeps is taken off.
    const response = await parse(
      event,
      lambdaContext('mailbridge-parse', 'us-east-1', INVOCATION_MARGIN_MS + 1500),
    );
    assert.deepEqual(response.batchItemFailures, [{ itemIdentifier: event.Records[1]!.messageId }]);
    assert.deepEqual(
      (await h.drainJobs()).map((job) => job.messageId).sort(),
      [quick.id, alsoQuick.id].sort(),
    );
  });

  it('dead-letters recipients that no longer route as unrouted, and delivers the others', async () => {
    const event = await h.store(await h.fixture('01-plain-ascii.eml'), {
      rcptTo: ['gone@example.test', 'support@example.test', 'left@example.test'],
    });
    assert.deepEqual(await h.handler()(sqsEvent([event])), { batchItemFailures: [] });
    assert.deepEqual(
      (await h.drainJobs()).map((job) => job.recipients),
      [['support@example.test']],
    );
    const [entry, ...more] = await h.drainDeadLetters();
    assert.deepEqual(more, []);
    assert.equal(entry?.reason, 'unrouted');
    assert.equal(entry?.id, event.id);
    assert.deepEqual(entry?.raw, event.raw);
    assert.deepEqual(entry?.envelope.rcptTo, ['gone@example.test', 'left@example.test']);
    assert.match(entry?.lastError ?? '', /no route matches gone@example\.test, left@example\.test/);

    // A retry of one route delivers to it alone and does not dead-letter the others a second time.
    assert.deepEqual(await h.handler()(sqsEvent([{ ...event, onlyRoute: 'support' }])), {
      batchItemFailures: [],
    });
    assert.deepEqual(
      (await h.drainJobs()).map((job) => job.recipients),
      [['support@example.test']],
    );
    assert.deepEqual(await h.drainDeadLetters(), []);
  });

  it('inlines small attachments for inline routes and links the rest with working presigned URLs', async () => {
    const small = Buffer.from('tiny png bytes');
    const big = Buffer.alloc(300_000, 7);
    for (let i = 0; i < big.length; i += 997) big[i] = i % 251;
    const event = await h.store(messageWithAttachments(small, big), {
      rcptTo: ['support@example.test', 'sales@example.test'],
    });
    await h.handler()(sqsEvent([event]));
    const jobs = await h.drainJobs();
    const byRoute = new Map<string, WebhookPayload>();
    for (const job of jobs) byRoute.set(job.routeId, await h.payload(job));

    const [inlineSmall, linkedBig] = byRoute.get('support')!.message.attachments;
    assert.ok(inlineSmall && 'content' in inlineSmall);
    assert.equal(Buffer.from(inlineSmall.content, 'base64').toString(), 'tiny png bytes');
    assert.equal(inlineSmall.sha256, sha256(small));
    assert.equal(inlineSmall.filename, 'small.png');
    assert.ok(linkedBig && 'url' in linkedBig, 'over the inline limit: linked');
    assert.equal(linkedBig.size, big.length);
    assert.equal(linkedBig.filename, '../../etc/big archive.zip');

    const sales = byRoute.get('sales')!.message.attachments;
    assert.ok(
      sales.every((attachment) => 'url' in attachment),
      'url mode links everything',
    );
    for (const attachment of [...sales, linkedBig]) {
      assert.ok('url' in attachment);
      const response = await fetch(attachment.url);
      assert.equal(response.status, 200);
      const bytes = Buffer.from(await response.arrayBuffer());
      assert.equal(bytes.length, attachment.size);
      assert.equal(sha256(bytes), attachment.sha256);
    }
    assert.match(new URL(linkedBig.url).pathname, /\/attachments\/[0-9A-Z]{26}\/1-etc_big_archive\.zip$/);

    // The jobs carry their payload with unsigned s3:// links: deliver signs them at each try.
    for (const job of jobs) {
      assert.ok('inline' in job.payload);
      assert.doesNotMatch(JSON.stringify(job), /X-Amz-/);
      assert.match(JSON.stringify(job), /"url":"s3:\/\/mailbridge-local\/attachments\//);
    }

    const raw = byRoute.get('support')!.raw;
    const rawResponse = await fetch(raw.url);
    const rawBytes = Buffer.from(await rawResponse.arrayBuffer());
    assert.equal(sha256(rawBytes), raw.sha256);
    assert.equal(raw.sha256, event.raw.sha256);
  });

  it('delivers a message whose MIME breaks with what was read, the raw link and a warning', async () => {
    const hugeHeader = `X-Huge: ${'a'.repeat(70)}${'\r\n b'.repeat(400_000)}`;
    const raw = [
      'From: Alice <alice@sender.test>',
      'To: support@example.test',
      'Subject: Broken on purpose',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="X"',
      '',
      '--X',
      'Content-Type: text/plain; name="first.txt"',
      'Content-Disposition: attachment; filename="first.txt"',
      '',
      'read before the break',
      '--X',
      'Content-Type: text/plain',
      '',
      'A text part after the attachment.',
      '--X',
      hugeHeader,
      'Content-Type: text/plain',
      '',
      'never reached',
      '--X--',
      '',
    ].join('\r\n');
    const event = await h.store(raw);
    assert.deepEqual(await h.handler()(sqsEvent([event])), { batchItemFailures: [] });
    const [job] = await h.drainJobs();
    const payload = await h.payload(job!);
    assert.equal(payload.message.subject, 'Broken on purpose');
    assert.ok(
      payload.warnings.some((warning) => warning.startsWith('mime_parse_failed: ')),
      payload.warnings.join(),
    );
    assert.deepEqual(payload.message.from, [{ name: 'Alice', address: 'alice@sender.test' }]);
    // mailsplit may fail before the attachment before the break ends: it is then dropped, never cut short.
    for (const attachment of payload.message.attachments) {
      assert.equal(attachment.size, 'read before the break'.length);
    }
    assert.equal(payload.raw.size, Buffer.byteLength(raw));
    assert.equal((await fetch(payload.raw.url)).status, 200);
  });

  it('measures the raw message itself and flags bare LF line endings', async () => {
    const event = await h.store(await h.fixture('32-bare-lf.eml'));
    const lying = { ...event, raw: { ...event.raw, size: 1, sha256: '0'.repeat(64) } };
    await h.handler()(sqsEvent([lying]));
    const [job] = await h.drainJobs();
    const payload = await h.payload(job!);
    assert.equal(payload.raw.size, event.raw.size);
    assert.equal(payload.raw.sha256, event.raw.sha256);
    assert.ok(payload.warnings.some((warning) => warning.startsWith('bare_lf')));
  });

  it('publishes the JSON Schema generated from the payload schema', async () => {
    const committed = JSON.parse(
      await readFile(new URL(`../../../${WEBHOOK_PAYLOAD_SCHEMA_PATH}`, import.meta.url), 'utf8'),
    );
    assert.deepEqual(
      committed,
      webhookPayloadJsonSchema(),
      `${WEBHOOK_PAYLOAD_SCHEMA_PATH} is stale: run node functions/parse/write-schema.ts`,
    );
  });
});
