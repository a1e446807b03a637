import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TimelineEvent } from '../../core/control/index.ts';
import { newMessageId, webhookId } from '../../core/index.ts';
import { type Inbox, startInbox } from '../../dev/index.ts';
import { startTestApi, type TestApi } from '../../harness/control-api.ts';
import { INBOX_SECRET, postSigned } from './inbox-helpers.ts';

const payload = (id: string) =>
  JSON.stringify({
    type: 'email.received',
    version: 1,
    id,
    receivedAt: new Date().toISOString(),
    route: { id: 'dev-inbox', recipients: ['help@example.test'] },
    message: { subject: 'Where is my order?', from: [{ name: '', address: 'ann@sender.test' }] },
  });

async function messagePage(inbox: Inbox, seq: number): Promise<string> {
  const response = await fetch(`${inbox.url}/messages/${seq}`);
  assert.equal(response.status, 200);
  return response.text();
}

describe('dev inbox: each message page shows its timeline from the message log (API over HTTP, dynalite)', () => {
  let api: TestApi;
  let key: string;

  before(async () => {
    api = await startTestApi();
    key = (await api.key('dev', 'full')).secret;
  });

  after(() => api.close());

  it('lists every event of the message, other endpoints’ failures included, escaped', async () => {
    const id = newMessageId();
    const inboxJob = {
      route: 'dev-inbox',
      endpoint: 'http://127.0.0.1:8025/webhooks',
      webhookId: webhookId(id, 'dev-inbox'),
    };
    const crmJob = { route: 'crm', endpoint: 'https://crm.test/hook', webhookId: webhookId(id, 'crm') };
    const at = (ms: number) => new Date(Date.now() + ms).toISOString();
    const events: TimelineEvent[] = [
      {
        at: at(0),
        type: 'received',
        mailFrom: '<script>x</script>@sender.test',
        rcptTo: ['help@example.test'],
        size: 900,
        remoteAddress: '127.0.0.1',
        helo: 'client',
        tls: false,
      },
      {
        at: at(10),
        type: 'parsed',
        subject: 'Where is my order?',
        from: 'ann@sender.test',
        jobs: [inboxJob, crmJob],
        unrouted: [],
        warnings: [],
      },
      { at: at(20), type: 'attempt', ...inboxJob, attempt: 1, status: 204, error: null, durationMs: 4 },
      { at: at(21), type: 'delivered', ...inboxJob, status: 204 },
      {
        at: at(22),
        type: 'attempt',
        ...crmJob,
        attempt: 1,
        status: 404,
        error: { class: 'http', text: 'HTTP 404' },
        durationMs: 9,
      },
      {
        at: at(23),
        type: 'dead_lettered',
        ...crmJob,
        reason: 'permanent',
        status: 404,
        error: 'HTTP 404: not found',
      },
    ];
    await api.store.store.appendEvents(
      id,
      events.map((event) => ({ eventId: newMessageId(), event })),
    );
    const inbox = await startInbox({
      port: 0,
      secrets: [INBOX_SECRET],
      api: { url: `${api.server.url}/v1`, key },
    });
    try {
      await postSigned(inbox, payload(id));
      const html = await messagePage(inbox, 1);
      const section = html.slice(
        html.indexOf('<section id="timeline">'),
        html.indexOf('<section id="text">'),
      );
      assert.match(section, /Status: <strong class="status">partially delivered<\/strong>/);
      assert.deepEqual(
        [...section.matchAll(/<tr class="(\w+)">/g)].map((match) => match[1]),
        ['received', 'parsed', 'attempt', 'delivered', 'attempt', 'dead_lettered'],
      );
      assert.ok(
        section.includes('from &lt;&lt;script&gt;x&lt;/script&gt;@sender.test&gt;'),
        'the sender is escaped',
      );
      assert.ok(!section.includes('<script>'));
      assert.match(
        section,
        /route crm → https:\/\/crm\.test\/hook: permanent, HTTP 404, HTTP 404: not found; in the delivery DLQ/,
      );
      assert.ok(html.includes('<a href="#timeline">Timeline</a>'));
    } finally {
      await inbox.close();
    }
  });

  it('says so when the log has no such message, when the key is refused, and when the API is off', async () => {
    const unknown = await startInbox({ port: 0, secrets: [INBOX_SECRET], api: { url: api.server.url, key } });
    const refused = await startInbox({
      port: 0,
      secrets: [INBOX_SECRET],
      api: { url: api.server.url, key: 'mbk_never-made-never-stored-000000000000000000' },
    });
    const off = await startInbox({ port: 0, secrets: [INBOX_SECRET] });
    try {
      const id = newMessageId();
      for (const inbox of [unknown, refused, off]) await postSigned(inbox, payload(id));
      assert.match(await messagePage(unknown, 1), new RegExp(`The message log has no message ${id}`));
      assert.match(await messagePage(refused, 1), /The message log cannot be read: send a valid API key/);
      assert.match(await messagePage(off, 1), /The control plane API is off: no message log to show\./);
    } finally {
      await Promise.all([unknown.close(), refused.close(), off.close()]);
    }
  });
});
