import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { TestEmulator } from '../../harness/emulator.ts';
import { type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { synthesizedRoles } from '../deployed/roles.ts';

const SECRET_A = 'whsec_ZTJlLXRpY2tldHMtc2VjcmV0';
const SECRET_B = 'whsec_ZTJlLXNhbGVzLXNlY3JldA==';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Payload {
  id: string;
  route: {
    id: string;
    recipients: string[];
    recipientDetails?: { address: string; mailboxHash: string | null }[];
  };
  envelope: { mailFrom: string; rcptTo: string[]; helo: string; remoteAddress: string; tls: unknown };
  message: {
    messageId: string;
    subject: string;
    from: { name: string; address: string }[];
    to: { name: string; address: string }[];
    cc: { name: string; address: string }[];
    replyTo: { name: string; address: string }[];
    text: string;
    html: string;
    mailboxHash: string | null;
    headers: { name: string; value: string }[];
    attachments: {
      filename: string;
      contentType: string;
      size: number;
      sha256: string;
      content?: string;
      url?: string;
    }[];
  };
  raw: { size: number; sha256: string; url: string };
  warnings: string[];
}

// Once against the emulator (conditional writes honoured by the proxy), once with AWS answering as it
// does where the emulator differs: each part may do only what its role in the synthesized app grants,
// and a missing key is 403 where the role may not list, which the emulator says 404.
for (const aws of [undefined, (emulator: TestEmulator) => ({ roles: synthesizedRoles(emulator) })]) {
  describe(`end to end: SMTP in, signed webhooks out${aws ? ', AWS answering with the deployed roles' : ''}`, () => {
    let tickets: WebhookReceiver;
    let sales: WebhookReceiver;
    let pipeline: Pipeline;

    before(async () => {
      tickets = await startWebhookReceiver({ secret: SECRET_A });
      sales = await startWebhookReceiver({ secret: SECRET_B });
      pipeline = await startPipeline({
        ...(aws ? { aws } : {}),
        domains: ['example.test', 'sales.test'],
        routes: [
          {
            id: 'tickets',
            match: ['*@example.test'],
            endpoints: [tickets.url],
            secret: { value: SECRET_A },
            attachments: { mode: 'inline', inlineLimitBytes: 1_000_000 },
          },
          {
            id: 'sales',
            match: ['*@sales.test'],
            endpoints: [sales.url],
            secret: { value: SECRET_B },
            attachments: { mode: 'url' },
          },
        ],
      });
    });

    after(async () => {
      await pipeline.close();
      await tickets.close();
      await sales.close();
    });

    it('delivers every field of a nodemailer message to each route, signed and byte-exact', async () => {
      const binary = randomBytes(300 * 1024);
      const note = Buffer.from('Quarterly numbers: 42\r\nÜmlaut ok\r\n', 'utf8');
      const html = '<p>Hello <b>team</b> — ünïcödé</p>';
      const text = 'Hello team — ünïcödé\nsecond line';
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: pipeline.smtpPort,
        secure: false,
        tls: { rejectUnauthorized: false },
        name: 'client.sender.test',
      });
      let info: { response: string; messageId: string };
      try {
        info = await transport.sendMail({
          from: 'Ann Sender <ann@sender.test>',
          to: 'Ticket Desk <ticket+abc123@example.test>',
          cc: 'Sales <sales@sales.test>',
          replyTo: 'Replies <replies@sender.test>',
          subject: 'Order #1234 — ready',
          text,
          html,
          attachments: [
            { filename: 'blob.bin', content: binary, contentType: 'application/octet-stream' },
            { filename: 'note.txt', content: note, contentType: 'text/plain; charset=utf-8' },
          ],
        });
      } finally {
        transport.close();
      }
      const queued = /queued as ([0-9A-Z]{26})/.exec(info.response)?.[1];
      assert.ok(queued, info.response);

      await tickets.waitForUnique(1, 20_000);
      await sales.waitForUnique(1, 20_000);
      assert.equal(tickets.invalid + sales.invalid, 0);
      const first = [...tickets.unique.values()][0]!;
      const second = [...sales.unique.values()][0]!;
      assert.notEqual(first.webhookId, second.webhookId);

      const rawUrls = new Set<string>();
      for (const [received, routeId, recipient] of [
        [first, 'tickets', 'ticket+abc123@example.test'],
        [second, 'sales', 'sales@sales.test'],
      ] as const) {
        const payload = received.payload as unknown as Payload;
        assert.equal(payload.id, queued);
        assert.equal(received.headers['user-agent'], 'mailbridge/0.1.0');
        assert.deepEqual(payload.route, {
          id: routeId,
          recipients: [recipient],
          recipientDetails: [
            { address: recipient, mailboxHash: recipient.startsWith('ticket+') ? 'abc123' : null },
          ],
        });
        assert.equal(payload.envelope.mailFrom, 'ann@sender.test');
        assert.deepEqual(payload.envelope.rcptTo, [recipient]);
        assert.equal(payload.envelope.helo, 'client.sender.test');
        assert.equal(payload.envelope.remoteAddress, '127.0.0.1');
        const { message } = payload;
        assert.equal(message.messageId, info.messageId);
        assert.equal(message.subject, 'Order #1234 — ready');
        assert.deepEqual(message.from, [{ name: 'Ann Sender', address: 'ann@sender.test' }]);
        assert.deepEqual(message.to, [{ name: 'Ticket Desk', address: 'ticket+abc123@example.test' }]);
        assert.deepEqual(message.cc, [{ name: 'Sales', address: 'sales@sales.test' }]);
        assert.deepEqual(message.replyTo, [{ name: 'Replies', address: 'replies@sender.test' }]);
        assert.equal(message.text.replace(/\r\n/g, '\n').trim(), text);
        assert.equal(message.html.trim(), html);
        assert.equal(message.mailboxHash, routeId === 'tickets' ? 'abc123' : null);
        assert.equal(message.headers[0]!.name.toLowerCase(), 'received');
        assert.deepEqual(
          message.attachments.map(({ filename, contentType, size, sha256 }) => ({
            filename,
            contentType,
            size,
            sha256,
          })),
          [
            {
              filename: 'blob.bin',
              contentType: 'application/octet-stream',
              size: binary.length,
              sha256: sha256(binary),
            },
            { filename: 'note.txt', contentType: 'text/plain', size: note.length, sha256: sha256(note) },
          ],
        );
        for (const [index, expected] of [binary, note].entries()) {
          const attachment = message.attachments[index]!;
          if (routeId === 'tickets') {
            assert.ok(attachment.content, 'inline route carries base64 content');
            assert.ok(Buffer.from(attachment.content, 'base64').equals(expected));
          } else {
            assert.ok(attachment.url, 'url route carries a link');
            const fetched = Buffer.from(await (await fetch(attachment.url)).arrayBuffer());
            assert.ok(fetched.equals(expected));
          }
        }
        const raw = Buffer.from(await (await fetch(payload.raw.url)).arrayBuffer());
        assert.equal(raw.length, payload.raw.size);
        assert.equal(sha256(raw), payload.raw.sha256);
        assert.match(raw.toString('latin1'), /^Received: from client\.sender\.test \(\[127\.0\.0\.1\]\)/);
        assert.ok(raw.toString('latin1').includes(`Message-ID: ${info.messageId}`));
        assert.deepEqual(payload.warnings, []);
        rawUrls.add(new URL(payload.raw.url).pathname);
      }
      assert.equal(rawUrls.size, 1, 'both routes link the same raw object');
      if (aws) {
        // Every part went through IAM, and its role allowed all it did: the deployed grants suffice.
        assert.deepEqual(pipeline.proxy.denials, []);
        assert.deepEqual([...pipeline.proxy.authorized.keys()].sort(), ['deliver', 'listener', 'parse']);
      }
    });
  });
}

describe('end to end: 200 messages while the endpoint fails 30% of tries', () => {
  const COUNT = 200;
  let primary: WebhookReceiver;
  let audit: WebhookReceiver;
  let pipeline: Pipeline;

  before(async () => {
    primary = await startWebhookReceiver({ secret: SECRET_A, failRate: 0.3, holdMs: 1500 });
    audit = await startWebhookReceiver({ secret: SECRET_B, failRate: 0.3, holdMs: 1500 });
    // Tries 1 s apart, eleven of them: 0.3^12 makes an exhausted schedule practically impossible.
    const retry = { retrySchedule: Array.from({ length: 11 }, () => 1), timeout: '1s' };
    pipeline = await startPipeline({
      domains: ['example.test'],
      routes: [
        {
          id: 'primary',
          match: ['*@example.test'],
          endpoints: [primary.url],
          secret: { value: SECRET_A },
          ...retry,
        },
        {
          id: 'audit',
          match: ['audit@example.test'],
          endpoints: [audit.url],
          secret: { value: SECRET_B },
          ...retry,
        },
      ],
      concurrency: 3,
    });
  });

  after(async () => {
    await pipeline.close();
    await primary.close();
    await audit.close();
  });

  it('delivers every message exactly once per route by webhook-id, none lost', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: pipeline.smtpPort,
      secure: false,
      pool: true,
      maxConnections: 8,
      maxMessages: Number.POSITIVE_INFINITY,
      tls: { rejectUnauthorized: false },
    });
    const sent = new Map<string, string>();
    try {
      await Promise.all(
        Array.from({ length: COUNT }, async (_, n) => {
          const tag = `m${n}`;
          const info = await transport.sendMail({
            from: 'load@sender.test',
            to: `user${n}@example.test`,
            cc: 'audit@example.test',
            subject: `load ${tag}`,
            text: `message ${tag}\n${'x'.repeat(n * 37)}`,
            headers: { 'X-Test-Tag': tag },
          });
          sent.set(tag, /queued as ([0-9A-Z]{26})/.exec(info.response)![1]!);
        }),
      );
    } finally {
      transport.close();
    }
    assert.equal(sent.size, COUNT);

    await primary.waitForUnique(COUNT, 45_000);
    await audit.waitForUnique(COUNT, 45_000);
    for (const [receiver, routeId, recipients] of [
      [primary, 'primary', (n: number) => [`user${n}@example.test`]],
      [audit, 'audit', () => ['audit@example.test']],
    ] as const) {
      assert.equal(receiver.invalid, 0);
      assert.equal(receiver.unique.size, COUNT);
      const byMessage = new Map<string, Set<string>>();
      for (const entry of receiver.received) {
        const payload = entry.payload as unknown as Payload;
        assert.equal(payload.route.id, routeId);
        const ids = byMessage.get(payload.id) ?? new Set();
        ids.add(entry.webhookId);
        byMessage.set(payload.id, ids);
      }
      // A repeat of a webhook is always the same webhook-id: dedupe on it leaves one per message.
      for (const id of sent.values()) {
        assert.equal(byMessage.get(id)?.size, 1, `message ${id} on ${routeId}`);
      }
      assert.equal(byMessage.size, COUNT);
      const entry = [...receiver.unique.values()].find(
        (candidate) => (candidate.payload as unknown as Payload).id === sent.get('m7'),
      )!;
      assert.deepEqual((entry.payload as unknown as Payload).route.recipients, recipients(7));
    }
    assert.ok(primary.tries > COUNT, 'failures forced retries');
  });
});
