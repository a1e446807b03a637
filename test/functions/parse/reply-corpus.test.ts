import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { parseConfigText, type WebhookPayload } from '../../../core/index.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

const FIXTURES = new URL('../../../harness/fixtures/reply-by-email/', import.meta.url);
const MARKER = '## Please type your reply above this line ##';

// A ticketing app: replies, bounces (VERP) and quotes each on their route, with the app's marker.
const CONFIG = `
hostname: mx.example.test
domains: [example.test]
listeners: [{ port: 0, mode: mx }]
health: { port: 0 }
routes:
  - id: tickets
    match: ['support@example.test']
    endpoints: ['https://hooks.app.test/tickets']
    secret: { value: whsec_dGVzdA== }
    replyMarkers: ['${MARKER}']
  - id: bounces
    match: ['bounces@example.test']
    endpoints: ['https://hooks.app.test/bounces']
    secret: { value: whsec_dGVzdA== }
  - id: quotes
    match: ['sales@example.test']
    endpoints: ['https://hooks.app.test/quotes']
    secret: { value: whsec_dGVzdA== }
    attachments: { mode: inline, inlineLimitBytes: 100000 }
`;

/** Each fixture, with the envelope its sending system uses. */
const ENVELOPES: Record<string, { mailFrom: string; rcptTo: string[] }> = {
  'gmail-vacation-auto-reply.eml': { mailFrom: 'jane.doe@gmail.com', rcptTo: ['support+t1234@example.test'] },
  'outlook-com-auto-reply.eml': {
    mailFrom: 'carl.jensen@outlook.com',
    rcptTo: ['support+t1234@example.test'],
  },
  // Exchange sends out-of-office replies with a null reverse-path.
  'exchange-out-of-office.eml': { mailFrom: '', rcptTo: ['support+t1234@example.test'] },
  'postfix-dsn.eml': { mailFrom: '', rcptTo: ['bounces+t1234@example.test'] },
  'exchange-online-dsn.eml': { mailFrom: '', rcptTo: ['bounces+t77@example.test'] },
  'outlook-winmail-dat.eml': { mailFrom: 'carl.jensen@contoso.com', rcptTo: ['support+t88@example.test'] },
  'outlook-msg-attachment.eml': { mailFrom: 'carl.jensen@contoso.com', rcptTo: ['sales+q311@example.test'] },
  'gmail-forward.eml': { mailFrom: 'pat.morgan@gmail.com', rcptTo: ['support@example.test'] },
  'gmail-forward-as-attachment.eml': { mailFrom: 'pat.morgan@gmail.com', rcptTo: ['support@example.test'] },
  'outlook-forward.eml': {
    mailFrom: 'carl.jensen@contoso.com',
    rcptTo: ['support@example.test', 'support+vip@example.test'],
  },
  'gmail-reply-marker-signature.eml': {
    mailFrom: 'jane.doe@gmail.com',
    rcptTo: ['support+t1234@example.test'],
  },
  'iphone-reply.eml': { mailFrom: 'sam.lee@icloud.com', rcptTo: ['support+t1234@example.test'] },
};

const NOT_AUTOMATED = { autoReply: false, bulk: false, bounce: false };
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('reply-by-email fixtures through the parse function', () => {
  let h: ParseHarness;
  const payloads = new Map<string, WebhookPayload>();

  before(async () => {
    h = await startParseHarness();
    const config = parseConfigText(CONFIG, { source: 'reply.yaml', runtime: 'local' });
    const names = (await readdir(FIXTURES)).filter((name) => name.endsWith('.eml')).sort();
    assert.deepEqual(names, Object.keys(ENVELOPES).sort(), 'every fixture has its envelope');
    const events = await Promise.all(
      names.map(async (name) => h.store(await readFile(new URL(name, FIXTURES)), ENVELOPES[name]!)),
    );
    assert.deepEqual(await h.handler({ config })(sqsEvent(events)), { batchItemFailures: [] });
    const byId = new Map(events.map((event, index) => [event.id, names[index]!]));
    for (const job of await h.drainJobs()) payloads.set(byId.get(job.messageId)!, await h.payload(job));
    assert.equal(payloads.size, names.length);
  });
  after(() => h.close());

  const payload = (name: string) => payloads.get(name)!;

  it('flags the Gmail, Outlook.com and Exchange auto-replies, and no person’s reply', () => {
    for (const name of [
      'gmail-vacation-auto-reply.eml',
      'outlook-com-auto-reply.eml',
      'exchange-out-of-office.eml',
    ]) {
      assert.deepEqual(payload(name).message.flags, { autoReply: true, bulk: false, bounce: false }, name);
      assert.equal(payload(name).message.bounce, null, name);
    }
    for (const name of ['gmail-reply-marker-signature.eml', 'iphone-reply.eml', 'gmail-forward.eml'])
      assert.deepEqual(payload(name).message.flags, NOT_AUTOMATED, name);
  });

  it('reads the Postfix DSN: failed recipient, status, diagnostic and the bounced Message-ID', () => {
    const { message, route } = payload('postfix-dsn.eml');
    assert.deepEqual(message.flags, { autoReply: true, bulk: false, bounce: true });
    assert.deepEqual(message.bounce, {
      action: 'failed',
      status: '5.1.1',
      finalRecipient: 'nobody@customer.example',
      diagnosticCode:
        'smtp; 550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown in virtual mailbox table',
      originalMessageId: '<ticket-1234-update-3@example.test>',
    });
    assert.deepEqual(route.recipientDetails, [
      { address: 'bounces+t1234@example.test', mailboxHash: 't1234' },
    ]);
  });

  it('reads the Exchange Online DSN (returned headers only)', () => {
    const { message } = payload('exchange-online-dsn.eml');
    assert.equal(message.flags?.bounce, true);
    assert.deepEqual(message.bounce, {
      action: 'failed',
      status: '5.1.10',
      finalRecipient: 'gone@fabrikam.example',
      diagnosticCode:
        'smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      originalMessageId: '<ticket-77-update-1@example.test>',
    });
  });

  it('unpacks winmail.dat into real attachments and keeps the original', async () => {
    const { message } = payload('outlook-winmail-dat.eml');
    const [winmail, photo, page] = message.attachments;
    assert.equal(message.attachments.length, 3);
    assert.equal(winmail!.filename, 'winmail.dat');
    assert.deepEqual(winmail!.unpacked, {
      format: 'tnef',
      subject: null,
      from: null,
      text: null,
      attachments: 2,
    });
    assert.deepEqual(
      [photo, page].map((file) => [file!.filename, file!.contentType, file!.size, file!.containedIn]),
      [
        ['zappa_av1.jpg', 'image/jpeg', 2937, 0],
        ['bookmark.htm', 'text/html', 85805, 0],
      ],
    );
    // The photo is stored as its own object, whose bytes match the size and hash announced.
    const stored = await h.emu.s3.send(
      new ListObjectsV2Command({
        Bucket: h.emu.resources.bucket,
        Prefix: `attachments/${payload('outlook-winmail-dat.eml').id}/`,
      }),
    );
    const photoKey = stored.Contents!.find((object) => object.Key!.endsWith('zappa_av1.jpg'))!.Key!;
    const bytes = await h.getObject(photoKey);
    assert.equal(bytes.length, 2937);
    assert.equal(sha256(bytes), photo!.sha256);
    assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff], 'a JPEG');
  });

  it('surfaces a .msg attachment’s text, sender and files, inline on an inline route', () => {
    const { message } = payload('outlook-msg-attachment.eml');
    const [msg, plan, csv] = message.attachments;
    assert.equal(msg!.filename, 'Quote request: 40 office chairs.msg');
    assert.deepEqual(msg!.unpacked, {
      format: 'msg',
      subject: 'Quote request: 40 office chairs',
      from: { name: 'Erin Baker', address: 'erin.baker@fabrikam.example' },
      text: 'Hello,\r\n\r\nPlease quote 40 office chairs, model K-2, delivered by 1 March.\r\nThe floor plan is attached.\r\n\r\nErin\r\n',
      attachments: 2,
    });
    assert.deepEqual(
      [plan, csv].map((file) => [file!.filename, file!.contentType, file!.containedIn]),
      [
        ['floor-plan.pdf', 'application/pdf', 0],
        ['chairs.csv', 'text/csv', 0],
      ],
    );
    assert.ok(csv && 'content' in csv);
    assert.equal(Buffer.from(csv.content, 'base64').toString(), 'model,count\r\nK-2,40\r\n');
  });

  it('gives a Gmail forward’s original sender and subject', () => {
    const { message } = payload('gmail-forward.eml');
    assert.deepEqual(message.forwarded, {
      from: { name: 'Dana Whitfield', address: 'dana@customer.example' },
      subject: 'Invoice 2024-0117 is wrong',
      date: 'Mon, 15 Jan 2024 at 16:42',
    });
    assert.equal(message.strippedText, 'Can you take this one?');
    assert.equal(message.strippedHtml, '<div dir="ltr">Can you take this one?<br><br></div>');
  });

  it('gives the original of a forward sent as an attached message', () => {
    const { message } = payload('gmail-forward-as-attachment.eml');
    assert.deepEqual(message.forwarded, {
      from: { name: 'Erin Bäker', address: 'erin.baker@fabrikam.example' },
      subject: 'Contract renewal',
      date: 'Tue, 16 Jan 2024 09:30:11 +0100',
    });
    assert.equal(message.attachments[0]!.contentType, 'message/rfc822');
  });

  it('gives an Outlook forward’s original sender and subject, and every recipient’s mailboxHash', () => {
    const { message, route } = payload('outlook-forward.eml');
    assert.deepEqual(message.forwarded, {
      from: { name: 'Erin Baker', address: 'erin.baker@fabrikam.example' },
      subject: 'Contract renewal',
      date: 'Tuesday, January 16, 2024 9:30 AM',
    });
    assert.equal(message.strippedText, 'Please handle this one.\n\nThanks,\nCarl');
    assert.ok(!message.strippedHtml!.includes('Our contract ends'), message.strippedHtml!);
    assert.match(message.strippedHtml!, /Please handle this one\./);
    assert.deepEqual(route.recipients, ['support@example.test', 'support+vip@example.test']);
    assert.deepEqual(route.recipientDetails, [
      { address: 'support@example.test', mailboxHash: null },
      { address: 'support+vip@example.test', mailboxHash: 'vip' },
    ]);
    assert.equal(message.mailboxHash, null, 'the first recipient’s, as before');
    assert.equal(payload('gmail-reply-marker-signature.eml').message.forwarded, null);
  });

  it('cuts a Gmail reply at the route’s marker and splits off its signature, in text and HTML', () => {
    const { message } = payload('gmail-reply-marker-signature.eml');
    assert.equal(
      message.strippedText,
      'The fire is out, but the printer still jams on page 2.\n\nThanks,\nJane',
    );
    assert.equal(message.signature, 'Jane Doe | Facilities\nAcme Corp, 3rd floor');
    assert.equal(
      message.strippedHtml,
      '<div dir="ltr"><div>The fire is out, but the printer still jams on page 2.</div><div><br></div><div>Thanks,</div><div>Jane</div><br></div><br>',
    );
    assert.equal(message.mailboxHash, 't1234');
  });

  it('treats "Sent from my iPhone" as the signature of an iPhone reply', () => {
    const { message } = payload('iphone-reply.eml');
    assert.equal(message.strippedText, 'Same problem on the 2nd floor.');
    assert.equal(message.signature, 'Sent from my iPhone');
    assert.match(message.strippedHtml!, /Same problem on the 2nd floor\./);
    assert.ok(
      !/Sent from my iPhone|Please type your reply|blockquote/.test(message.strippedHtml!),
      message.strippedHtml!,
    );
  });
});
