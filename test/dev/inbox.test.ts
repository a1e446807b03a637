import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { type Inbox, type InboxEntry, startInbox } from '../../dev/index.ts';

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const rotated = 'whsec_c2Vjb25kLWRldi1zZWNyZXQtZm9yLXRlc3Rz';

function signedHeaders(body: string, key: string, id = 'msg_test'): Record<string, string> {
  const timestamp = new Date();
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': new Webhook(key).sign(id, timestamp, body),
  };
}

function payload(subject: string): string {
  return JSON.stringify({
    type: 'email.received',
    version: 1,
    route: { id: 'dev-inbox', recipients: ['you@example.test'] },
    message: {
      subject,
      from: [{ name: 'Ann <Sender>', address: 'ann@sender.test' }],
      to: [{ name: '', address: 'you@example.test' }],
      attachments: [{ filename: 'report.pdf', contentType: 'application/pdf', size: 1234 }],
    },
    auth: {
      spf: { result: 'pass' },
      dkim: [{ result: 'pass', domain: 'sender.test' }],
      dmarc: { result: 'pass' },
      arc: { result: 'none' },
    },
  });
}

async function post(inbox: Inbox, body: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(`${inbox.url}/webhooks`, { method: 'POST', body, headers });
  await response.arrayBuffer();
  return response.status;
}

describe('dev inbox', () => {
  let inbox: Inbox;
  before(async () => {
    inbox = await startInbox({ port: 0, secrets: [secret, rotated], maxEntries: 3 });
  });
  after(async () => {
    await inbox.close();
  });

  it('records a webhook signed with either secret as valid, byte for byte', async () => {
    // Odd spacing, escapes and non-ASCII: the API must return exactly what was sent.
    const body = '{ "subject":"héllo \\u2603 ☃",  "n" : 1 }\n';
    assert.equal(await post(inbox, body, signedHeaders(body, secret)), 204);
    assert.equal(await post(inbox, body, signedHeaders(body, rotated, 'msg_2')), 204);
    const entries = (await (await fetch(`${inbox.url}/api/webhooks`)).json()) as InboxEntry[];
    const [first, second] = entries.slice(-2);
    assert.equal(first!.body, body);
    assert.equal(first!.signatureValid, true);
    assert.equal(second!.signatureValid, true);
    assert.equal(first!.headers['webhook-id'], 'msg_test');
    assert.ok(!Number.isNaN(Date.parse(first!.receivedAt)));
  });

  it('marks a tampered or unsigned webhook as invalid, and still records it', async () => {
    const body = payload('original');
    const headers = signedHeaders(body, secret);
    await post(inbox, body.replace('original', 'tampered'), headers);
    await post(inbox, body, { 'content-type': 'application/json' });
    await post(inbox, body, signedHeaders(body, 'whsec_d3JvbmctZGV2LXNlY3JldC1mb3ItdGVzdHM='));
    const entries = (await (await fetch(`${inbox.url}/api/webhooks`)).json()) as InboxEntry[];
    assert.deepEqual(
      entries.map((entry) => entry.signatureValid),
      [false, false, false],
    );
    assert.match(entries[0]!.body, /tampered/);
  });

  it('keeps only the newest maxEntries, newest last', async () => {
    for (const subject of ['one', 'two', 'three', 'four']) {
      const body = payload(subject);
      await post(inbox, body, signedHeaders(body, secret));
    }
    const entries = (await (await fetch(`${inbox.url}/api/webhooks`)).json()) as InboxEntry[];
    assert.deepEqual(
      entries.map((entry) => JSON.parse(entry.body).message.subject),
      ['two', 'three', 'four'],
    );
    assert.equal(inbox.entries.length, 3);
    assert.equal(inbox.received, 9);
    const count = await (await fetch(`${inbox.url}/api/webhooks/count`)).json();
    assert.deepEqual(count, { received: 9, kept: 3 });
  });

  it('lists webhooks newest first on the page, escaping hostile content', async () => {
    const hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>';
    const body = payload(hostile);
    await post(inbox, body, signedHeaders(body, secret));
    const response = await fetch(`${inbox.url}/`);
    const html = await response.text();
    assert.match(response.headers.get('content-type')!, /^text\/html/);
    assert.match(response.headers.get('content-security-policy')!, /script-src 'self';/);
    assert.ok(!html.includes(hostile));
    assert.ok(!html.includes('<img src=x'));
    assert.ok(
      html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'),
    );
    assert.ok(html.includes('Ann &lt;Sender&gt; &lt;ann@sender.test&gt;'));
    assert.ok(html.includes('report.pdf</a> <span class="muted">application/pdf, 1234 bytes'));
    assert.ok(html.includes('spf=pass · dkim=pass (sender.test) · dmarc=pass · arc=none'));
    assert.ok(html.includes('<span class="ok">valid</span>'));
    assert.ok(html.indexOf('&lt;script&gt;') < html.indexOf('>four</a>'), 'newest first');
    assert.deepEqual(
      html.match(/<script[^>]*>/g),
      ['<script src="/assets/inbox.js">'],
      'only the page script file',
    );
  });

  it('serves one entry as JSON for the page to open', async () => {
    const last = inbox.received;
    const entry = (await (await fetch(`${inbox.url}/api/webhooks/${last}`)).json()) as InboxEntry;
    assert.deepEqual(entry, JSON.parse(JSON.stringify(inbox.entries.at(-1))));
    assert.equal((await fetch(`${inbox.url}/api/webhooks/1`)).status, 404);
    assert.equal((await fetch(`${inbox.url}/webhooks`)).status, 405);
  });

  it('waitFor resolves once enough webhooks have arrived', async () => {
    const waiting = inbox.waitFor(inbox.received + 1, 5000);
    const body = payload('awaited');
    await post(inbox, body, signedHeaders(body, secret));
    const entries = await waiting;
    assert.equal(JSON.parse(entries.at(-1)!.body).message.subject, 'awaited');
  });
});

describe('dev inbox: webhooks of routes made through the API', () => {
  const apiRouteSecret = 'whsec_YXBpLXJvdXRlLXNlY3JldC1mb3ItdGVzdHM=';
  let inbox: Inbox;
  before(async () => {
    // The API made route "support" after the inbox started: its secret is asked for by route id.
    inbox = await startInbox({
      port: 0,
      secrets: [secret],
      routeSecrets: async (routeId) => (routeId === 'support' ? [apiRouteSecret] : []),
    });
  });
  after(() => inbox.close());

  it("checks the signature against the named route's current secrets, and only that route's", async () => {
    const support = payload('for support').replace('"id":"dev-inbox"', '"id":"support"');
    const other = payload('for another').replace('"id":"dev-inbox"', '"id":"other"');
    await post(inbox, support, signedHeaders(support, apiRouteSecret));
    await post(inbox, other, signedHeaders(other, apiRouteSecret));
    await post(inbox, support, signedHeaders(support, rotated));
    const entries = (await (await fetch(`${inbox.url}/api/webhooks`)).json()) as InboxEntry[];
    assert.deepEqual(
      entries.map((entry) => entry.signatureValid),
      [true, false, false],
    );
  });
});
