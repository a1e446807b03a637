import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { routeOutcome } from '../../core/filtering/index.ts';
import {
  INLINE_JOB_BYTES,
  type InboundEvent,
  inlinePayload,
  messageFingerprint,
  parseConfigText,
  type RouteGroup,
  routeJobs,
  routePayload,
  sqsJson,
  WebhookPayloadSchema,
  webhookId,
} from '../../core/index.ts';
import { webhookPayload } from '../../harness/webhook-payload.ts';

const config = parseConfigText(
  `
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes:
  - id: support
    match: ['*@example.test']
    endpoints: ['https://hooks.app.test/support', 'https://audit.app.test/a-much-longer-path/support']
    secret: { value: whsec_dGVzdA== }
    attachments: { mode: inline, inlineLimitBytes: 10 }
  - id: sales
    match: ['sales@example.test']
    endpoints: ['https://hooks.app.test/sales']
    secret: { value: whsec_dGVzdA== }
`,
  { source: 'test.yaml', runtime: 'local' },
);
const [support, sales] = config.routes as [(typeof config.routes)[0], (typeof config.routes)[0]];
const MESSAGE_ID = '01JROUTEPAYLOAD0000000000A';

const event: InboundEvent = {
  version: 1,
  id: MESSAGE_ID,
  receivedAt: '2026-11-20T10:00:00.000Z',
  raw: { bucket: 'mail', key: `raw/2026/11/20/${MESSAGE_ID}.eml`, size: 120, sha256: 'b'.repeat(64) },
  envelope: {
    mailFrom: 'Alice@Sender.test',
    rcptTo: ['ticket+ab12@example.test', 'help@example.test', 'sales@example.test'],
    helo: 'mail.sender.test',
    remoteAddress: '192.0.2.7',
    tls: null,
  },
} as InboundEvent;

const file = (name: string, size: number, bytes?: Buffer) => ({
  key: `attachments/${MESSAGE_ID}/${name}`,
  filename: name,
  contentType: 'application/octet-stream',
  size,
  sha256: 'c'.repeat(64),
  disposition: 'attachment',
  contentId: null,
  bytes,
});
const read = {
  size: 120,
  sha256: 'b'.repeat(64),
  auth: webhookPayload(MESSAGE_ID).auth,
  attachments: [file('small.bin', 4, Buffer.from('tiny')), file('large.bin', 400)],
};
const { attachments: _none, mailboxHash: _hash, ...message } = webhookPayload(MESSAGE_ID).message;

function payloadFor(group: RouteGroup, warnings: string[] = []) {
  return routePayload({
    event,
    read,
    group,
    message,
    routeDetails: {},
    bucket: 'mail',
    warnings,
    filtering: routeOutcome(undefined, group.route),
  });
}

describe('routePayload', () => {
  it('builds a payload of the schema for the route’s recipients only, with placeholder links', () => {
    const payload = payloadFor(
      { route: support, recipients: ['ticket+ab12@example.test', 'help@example.test'] },
      ['bare_lf: lines end in LF without CR'],
    );
    assert.ok(WebhookPayloadSchema.safeParse(payload).success);
    assert.deepEqual(payload.route, {
      id: 'support',
      recipients: ['ticket+ab12@example.test', 'help@example.test'],
    });
    assert.deepEqual(
      payload.envelope.rcptTo,
      payload.route.recipients,
      'other routes’ recipients (Bcc) not told',
    );
    assert.equal(payload.message.mailboxHash, 'ab12', 'the first recipient’s plus tag');
    assert.equal(payload.raw.url, `s3://mail/raw/2026/11/20/${MESSAGE_ID}.eml`);
    assert.deepEqual(payload.warnings, ['bare_lf: lines end in LF without CR']);
    assert.equal(payload.spam?.verdict, 'unavailable', 'no scan: the route filtering outcome says so');
  });

  it('inlines an attachment within an inline route’s limit and links the rest; a url route links all', () => {
    const inline = payloadFor({ route: support, recipients: ['help@example.test'] }).message.attachments;
    assert.deepEqual(
      inline.map((attachment) => ('content' in attachment ? attachment.content : attachment.url)),
      [Buffer.from('tiny').toString('base64'), `s3://mail/attachments/${MESSAGE_ID}/large.bin`],
    );
    const linked = payloadFor({ route: sales, recipients: ['sales@example.test'] }).message.attachments;
    assert.ok(linked.every((attachment) => 'url' in attachment && !('content' in attachment)));
    assert.ok(linked.every((attachment) => !('key' in attachment) && !('bytes' in attachment)));
  });
});

describe('inlinePayload and routeJobs', () => {
  const group = { route: support, recipients: ['help@example.test'] };

  it('puts a payload inside the jobs while the longest endpoint’s job fits, and stores it past that', () => {
    const small = payloadFor(group);
    assert.deepEqual(inlinePayload(group, MESSAGE_ID, small), { inline: small });
    // Grow the text until the job with the longest endpoint is just over the limit.
    const jobBytes = (text: string) => {
      const payload = { ...small, message: { ...small.message, text } };
      const [, longest] = routeJobs(group, MESSAGE_ID, { inline: payload });
      return Buffer.byteLength(sqsJson(longest));
    };
    const filler = INLINE_JOB_BYTES - jobBytes('');
    const fits = { ...small, message: { ...small.message, text: 'x'.repeat(filler) } };
    const over = { ...small, message: { ...small.message, text: 'x'.repeat(filler + 1) } };
    assert.equal(jobBytes(fits.message.text), INLINE_JOB_BYTES);
    assert.deepEqual(inlinePayload(group, MESSAGE_ID, fits), { inline: fits });
    assert.equal(inlinePayload(group, MESSAGE_ID, over), undefined);
  });

  it('makes one job per endpoint, with the route’s webhook id, the same on every run', () => {
    const where = { bucket: 'mail', key: `payloads/${MESSAGE_ID}/support.json` };
    const jobs = routeJobs(group, MESSAGE_ID, where);
    assert.deepEqual(
      jobs.map((job) => job.endpoint),
      support.endpoints,
    );
    for (const job of jobs) {
      assert.deepEqual(job, {
        version: 1,
        messageId: MESSAGE_ID,
        routeId: 'support',
        endpoint: job.endpoint,
        recipients: ['help@example.test'],
        payload: where,
        webhookId: webhookId(MESSAGE_ID, 'support'),
      });
    }
    assert.deepEqual(routeJobs(group, MESSAGE_ID, where), jobs);
  });
});

describe('messageFingerprint', () => {
  it('is the same for the same content and envelope, whatever the case and order of addresses', () => {
    const same = messageFingerprint('d'.repeat(64), {
      ...event.envelope,
      mailFrom: 'alice@sender.test',
      rcptTo: ['SALES@example.test', 'help@example.test', 'ticket+ab12@example.test'],
    });
    assert.equal(messageFingerprint('d'.repeat(64), event.envelope), same);
    assert.notEqual(messageFingerprint('e'.repeat(64), event.envelope), same, 'other content');
    assert.notEqual(
      messageFingerprint('d'.repeat(64), { ...event.envelope, rcptTo: ['help@example.test'] }),
      same,
      'other recipients',
    );
  });
});
