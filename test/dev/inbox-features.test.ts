import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { newMessageId, rawObjectKey } from '../../core/index.ts';
import {
  type DeliveryOutcome,
  type DeliveryOutcomeSource,
  s3RawReader,
  startInbox,
} from '../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { INBOX_SECRET, postSigned } from './inbox-helpers.ts';

function payload(fields: {
  id?: string;
  receivedAt?: string;
  subject: string;
  text?: string;
  html?: string | null;
}) {
  return JSON.stringify({
    type: 'email.received',
    version: 1,
    id: fields.id ?? newMessageId(),
    receivedAt: fields.receivedAt ?? new Date().toISOString(),
    route: {
      id: 'dev-inbox',
      recipients: ['ticket+t42@example.test'],
      recipientDetails: [{ address: 'ticket+t42@example.test', mailboxHash: 't42' }],
    },
    message: {
      subject: fields.subject,
      messageId: '<m1@sender.test>',
      inReplyTo: '<ticket-42@example.test>',
      references: ['<ticket-42@example.test>'],
      from: [{ name: 'Ann', address: 'ann@sender.test' }],
      to: [{ name: '', address: 'ticket+t42@example.test' }],
      headers: [
        { name: 'From', value: 'Ann <ann@sender.test>' },
        { name: 'X-Probe', value: 'header <value>' },
      ],
      text: fields.text ?? 'Hello there',
      html: fields.html === undefined ? '<p>Hello <script>parent.hacked = 1</script></p>' : fields.html,
      strippedText: fields.text ?? 'Hello there',
      mailboxHash: 't42',
      flags: { autoReply: true, bulk: false, bounce: false },
      bounce: {
        action: 'failed',
        status: '5.1.1',
        finalRecipient: 'gone@customer.test',
        diagnosticCode: 'smtp; 550 5.1.1 <gone@customer.test>: user unknown',
        originalMessageId: '<n1@example.test>',
      },
      forwarded: { from: { name: 'Bo', address: 'bo@vendor.test' }, subject: 'Quote 7', date: null },
      attachments: [
        {
          filename: 'notes.txt',
          contentType: 'text/plain',
          size: 5,
          sha256: '0'.repeat(64),
          content: Buffer.from('notes').toString('base64'),
        },
        {
          filename: 'big.bin',
          contentType: 'application/octet-stream',
          size: 9,
          sha256: '0'.repeat(64),
          url: 'http://127.0.0.1:9/big.bin',
        },
      ],
    },
    auth: { spf: { result: 'temperror' }, dkim: [], dmarc: { result: 'temperror' }, arc: { result: 'none' } },
    warnings: ['bare_lf: lines end in LF without CR'],
  });
}

/** Opens the event stream and yields each event as { event, data }. */
async function* sse(url: string, signal: AbortSignal) {
  const response = await fetch(`${url}/api/events`, { signal });
  assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body!) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event) yield { event, data: data ? JSON.parse(data) : undefined };
    }
  }
}

describe('dev inbox: persistence, live events, search, clear, message views', () => {
  let dataDir: string;
  let emulator: TestEmulator;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-inbox-'));
    emulator = await startTestEmulator();
  });
  after(async () => {
    await emulator.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps the webhooks across a restart, byte for byte, and forgets them on clear', async () => {
    const first = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir });
    const bodies = [payload({ subject: 'one' }), `${payload({ subject: 'two' })}\n`];
    for (const body of bodies) await postSigned(first, body);
    await first.close();

    const second = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir });
    try {
      const entries = (await (await fetch(`${second.url}/api/webhooks`)).json()) as {
        body: string;
        signatureValid: boolean;
      }[];
      assert.deepEqual(
        entries.map((entry) => [entry.body, entry.signatureValid]),
        bodies.map((body) => [body, true]),
      );
      assert.equal(second.received, 2);
      await postSigned(second, payload({ subject: 'three' }));
      assert.deepEqual(await (await fetch(`${second.url}/api/webhooks/count`)).json(), {
        received: 3,
        kept: 3,
      });
      const cleared = await fetch(`${second.url}/api/webhooks`, { method: 'DELETE' });
      assert.deepEqual(await cleared.json(), { received: 3, kept: 0 }, 'numbering goes on after a clear');
      assert.deepEqual(await (await fetch(`${second.url}/api/webhooks`)).json(), []);
    } finally {
      await second.close();
    }
    const third = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir });
    assert.equal(third.entries.length, 0, 'a clear is kept across restarts too');
    await postSigned(third, payload({ subject: 'four' }));
    assert.equal(third.received, 4);
    const fourth = (await (await fetch(`${third.url}/api/webhooks/4`)).json()) as { body: string };
    assert.equal(JSON.parse(fourth.body).message.subject, 'four');
    await third.close();
  });

  it('keeps only maxEntries on disk as in memory, rewriting its file', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'mailbridge-inbox-'));
    const inbox = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir: folder, maxEntries: 2 });
    for (const subject of ['a', 'b', 'c', 'd', 'e']) await postSigned(inbox, payload({ subject }));
    await inbox.close();
    const lines = (await readFile(join(folder, 'inbox', 'webhooks.jsonl'), 'utf8')).trim().split('\n');
    assert.ok(lines.length <= 4, `${lines.length} lines`);
    const again = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir: folder, maxEntries: 2 });
    assert.deepEqual(
      again.entries.map((entry) => JSON.parse(entry.body).message.subject),
      ['d', 'e'],
    );
    assert.equal(again.received, 5);
    await again.close();
    await rm(folder, { recursive: true, force: true });
  });

  it('announces each new webhook, failure and clear over server-sent events', async () => {
    const listeners = new Set<(outcome: DeliveryOutcome) => void>();
    const outcomes: DeliveryOutcomeSource = {
      recent: async () => [],
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    const inbox = await startInbox({ port: 0, secrets: [INBOX_SECRET], outcomes });
    const abort = new AbortController();
    try {
      const stream = sse(inbox.url, abort.signal);
      const hello = (await stream.next()).value as { event: string; data: Record<string, unknown> };
      assert.equal(hello.event, 'hello');
      assert.deepEqual(
        { ...hello.data, started: typeof hello.data.started },
        {
          received: 0,
          failures: 0,
          started: 'string',
        },
      );
      await postSigned(inbox, payload({ subject: 'live' }));
      assert.deepEqual((await stream.next()).value, { event: 'webhook', data: { seq: 1 } });
      const failure: DeliveryOutcome = {
        at: new Date().toISOString(),
        messageId: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
        routeId: 'crm',
        endpoint: 'https://crm.app.test/hook',
        outcome: 'failed',
        status: 500,
        error: 'HTTP 500 <Internal Server Error>',
        attempt: 8,
      };
      for (const listener of listeners)
        listener({ ...failure, outcome: 'delivered', status: 200, error: null });
      for (const listener of listeners) listener(failure);
      assert.deepEqual(
        (await stream.next()).value,
        { event: 'failure', data: { seq: 1 } },
        'successes are not shown',
      );
      const page = await (await fetch(`${inbox.url}/`)).text();
      assert.match(page, /Delivery failed \(dead-lettered\): route crm/);
      assert.ok(page.includes('HTTP 500 &lt;Internal Server Error&gt;'));
      assert.deepEqual(await (await fetch(`${inbox.url}/api/search?q=crm.app.test`)).json(), {
        seqs: [],
        failures: [1],
      });
      await inbox.clear();
      assert.deepEqual((await stream.next()).value, { event: 'clear', data: {} });
      assert.doesNotMatch(await (await fetch(`${inbox.url}/`)).text(), /Delivery failed/, 'cleared too');
      assert.equal((await fetch(`${inbox.url}/fragments/failures/1`)).status, 404);
      for (const listener of listeners) listener({ ...failure, outcome: 'retry_scheduled', attempt: 2 });
      assert.deepEqual((await stream.next()).value, { event: 'failure', data: { seq: 2 } });
    } finally {
      abort.abort();
      await inbox.close();
    }
    assert.equal(listeners.size, 0, 'unsubscribed on close');
  });

  it('keeps only the newest maxEntries failed deliveries', async () => {
    const outcomes: DeliveryOutcomeSource = {
      recent: async () =>
        [1, 2, 3].map((attempt) => ({
          at: new Date(Date.UTC(2026, 0, 1, 0, 0, attempt)).toISOString(),
          messageId: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
          routeId: 'crm',
          endpoint: 'https://crm.app.test/hook',
          outcome: 'retry_scheduled' as const,
          status: 503,
          error: `try ${attempt}`,
          attempt,
        })),
      subscribe: () => () => {},
    };
    const inbox = await startInbox({ port: 0, secrets: [INBOX_SECRET], outcomes, maxEntries: 2 });
    try {
      const page = await (await fetch(`${inbox.url}/`)).text();
      assert.deepEqual(page.match(/id="f\d+"/g), ['id="f3"', 'id="f2"']);
      assert.equal((await fetch(`${inbox.url}/fragments/failures/1`)).status, 404);
    } finally {
      await inbox.close();
    }
  });

  it('finds webhooks by words of their subject, text, addresses, hashes and attachment names', async () => {
    const inbox = await startInbox({ port: 0, secrets: [INBOX_SECRET] });
    try {
      await postSigned(inbox, payload({ subject: 'Printer on fire', text: 'third floor' }));
      await postSigned(inbox, payload({ subject: 'Invoice 2024-0117', text: 'twelve seats' }));
      const search = async (q: string) =>
        (
          (await (await fetch(`${inbox.url}/api/search?q=${encodeURIComponent(q)}`)).json()) as {
            seqs: number[];
          }
        ).seqs;
      assert.deepEqual(await search('printer'), [1]);
      assert.deepEqual(await search('TWELVE seats'), [2]);
      assert.deepEqual(await search('ann@sender.test'), [1, 2]);
      assert.deepEqual(await search('notes.txt t42'), [1, 2]);
      assert.deepEqual(await search('printer invoice'), []);
      assert.deepEqual(await search(''), [1, 2]);
    } finally {
      await inbox.close();
    }
  });

  it('shows a message: sandboxed HTML, attachments, raw source, headers and the full JSON', async () => {
    const id = newMessageId();
    const receivedAt = new Date().toISOString();
    const rawSource = 'From: Ann <ann@sender.test>\r\nSubject: raw\r\n\r\nThe raw bytes.\r\n';
    await emulator.s3.send(
      new PutObjectCommand({
        Bucket: emulator.resources.bucket,
        Key: rawObjectKey(id, new Date(receivedAt)),
        Body: rawSource,
      }),
    );
    const inbox = await startInbox({
      port: 0,
      secrets: [INBOX_SECRET],
      readRaw: s3RawReader(emulator.s3, emulator.resources.bucket),
    });
    try {
      await postSigned(inbox, payload({ id, receivedAt, subject: 'Views <b>' }));
      const page = await fetch(`${inbox.url}/messages/1`);
      const html = await page.text();
      assert.match(page.headers.get('content-security-policy')!, /frame-src 'self'/);
      assert.ok(html.includes('<iframe sandbox="" referrerpolicy="no-referrer" src="/messages/1/html"'));
      assert.ok(html.includes('<th>X-Probe</th><td>header &lt;value&gt;</td>'));
      assert.ok(html.includes('&quot;subject&quot;: &quot;Views &lt;b&gt;&quot;'), 'the full JSON, escaped');
      assert.ok(html.includes('ticket+t42@example.test: t42'), 'mailbox hashes');
      assert.ok(html.includes('<span class="badge autoReply">auto-reply</span>'), 'flags');
      assert.ok(html.includes('temperror: the DNS lookups got no answer (offline)'));
      assert.ok(html.includes('&lt;ticket-42@example.test&gt;'), 'threading fields');
      assert.ok(
        html.includes(
          'gone@customer.test · failed · 5.1.1 · smtp; 550 5.1.1 &lt;gone@customer.test&gt;: user unknown',
        ),
        'the bounce report',
      );
      assert.ok(html.includes('Bo &lt;bo@vendor.test&gt; · Quote 7'), 'the forwarded original');

      const messageHtml = await fetch(`${inbox.url}/messages/1/html`);
      assert.match(messageHtml.headers.get('content-security-policy')!, /^sandbox; default-src 'none'/);

      const text = await fetch(`${inbox.url}/messages/1/attachments/0`);
      assert.equal(text.headers.get('content-disposition'), "attachment; filename*=UTF-8''notes.txt");
      assert.equal(await text.text(), 'notes');
      const linked = await fetch(`${inbox.url}/messages/1/attachments/1`, { redirect: 'manual' });
      assert.equal(linked.status, 302);
      assert.equal(linked.headers.get('location'), 'http://127.0.0.1:9/big.bin');
      assert.equal((await fetch(`${inbox.url}/messages/1/attachments/2`)).status, 404);

      const raw = await fetch(`${inbox.url}/messages/1/raw.eml`);
      assert.equal(raw.headers.get('content-type'), 'message/rfc822');
      assert.equal(await raw.text(), rawSource);
      assert.equal(await (await fetch(`${inbox.url}/messages/1/raw`)).text(), rawSource);

      await postSigned(inbox, payload({ subject: 'not stored' }));
      assert.equal((await fetch(`${inbox.url}/messages/2/raw`)).status, 404);
      const card = await (await fetch(`${inbox.url}/fragments/messages/2`)).text();
      assert.match(card, /^<article class="card" id="m2"/);
      assert.ok(card.includes('<span class="badge autoReply">auto-reply</span>'));
    } finally {
      await inbox.close();
    }
  });
});
