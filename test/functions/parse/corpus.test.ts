import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { InboundEvent, WebhookPayload } from '../../../core/index.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { assertSchemaValid, FIXTURES, type ParseHarness, startParseHarness } from './harness.ts';

type Check = (payload: WebhookPayload) => void;

const filenames = (payload: WebhookPayload) => payload.message.attachments.map((a) => a.filename);

/** What a reader of each interesting fixture would expect to see. */
const EXPECT: Record<string, Check> = {
  '02-alternative.eml': ({ message }) => {
    assert.equal(message.text, 'Plain version of the message.');
    assert.match(message.html!, /<b>version<\/b>/);
  },
  '03-mixed-pdf.eml': (payload) => {
    assert.deepEqual(filenames(payload), ['invoice-2024.pdf']);
    assert.equal(payload.message.attachments[0]!.contentType, 'application/pdf');
    assert.equal(payload.message.attachments[0]!.size, 1069);
  },
  '04-related-inline-image.eml': ({ message }) => {
    assert.equal(message.attachments[0]!.contentId, 'logo@sender.test');
    assert.equal(message.attachments[0]!.disposition, 'inline');
    assert.ok('content' in message.attachments[0]!, 'small enough to inline on this route');
  },
  '05-nested-rfc822.eml': (payload) => {
    assert.deepEqual(filenames(payload), ['original.eml']);
    assert.equal(payload.message.attachments[0]!.contentType, 'message/rfc822');
  },
  '06-calendar-invite.eml': ({ message }) => {
    assert.ok(message.attachments.some((a) => a.contentType === 'text/calendar'));
    assert.ok(message.attachments.some((a) => a.filename === 'invite.ics'));
  },
  '07-gmail-reply.eml': ({ message }) => {
    assert.equal(message.strippedText, 'Thanks, that fixed it!');
    assert.equal(message.inReplyTo, '<ticket-9@example.test>');
    assert.deepEqual(message.references, ['<ticket-1@example.test>', '<ticket-9@example.test>']);
  },
  '08-outlook-original-message.eml': ({ message }) => {
    assert.equal(message.strippedText, 'I approve the contract.\n\nCarl');
    assert.deepEqual(message.from, [{ name: 'Carl, Contoso', address: 'carl@contoso.test' }]);
  },
  '09-outlook-from-sent.eml': ({ message }) => assert.equal(message.strippedText, 'Tuesday works for me.'),
  '10-apple-mail-reply.eml': ({ message }) => assert.equal(message.strippedText, 'Great, thank you!'),
  '11-signature.eml': ({ message }) => assert.equal(message.strippedText, 'Why was I charged twice?'),
  '12-broken-boundary-missing-close.eml': (payload) => {
    assert.equal(payload.message.text, 'The closing boundary never comes.');
    assert.deepEqual(filenames(payload), ['notes.txt']);
  },
  '14-missing-headers.eml': ({ message }) => {
    assert.equal(message.subject, null);
    assert.equal(message.messageId, null);
    assert.equal(message.date, null);
    assert.deepEqual(message.from, []);
    assert.equal(message.text, 'Just a body.\n');
  },
  '15-huge-headers.eml': ({ message }) => {
    assert.equal(message.headers.filter((h) => h.name === 'Received').length, 40);
    const huge = message.headers.find((h) => h.name === 'X-Huge')!;
    assert.ok(huge.value.length > 150_000 && !huge.value.includes('\n'), 'unfolded');
  },
  '16-8bit-utf8-headers.eml': ({ message }) => {
    assert.equal(message.subject, 'Grüße — naïve café ☕');
    assert.deepEqual(message.from, [{ name: 'Zoë Ångström', address: 'zoe@sender.test' }]);
    assert.equal(message.headers.find((h) => h.name === 'Subject')!.value, 'Grüße — naïve café ☕');
  },
  '17-iso-8859-1.eml': ({ message }) => {
    assert.equal(message.subject, 'Grüße aus Köln');
    assert.equal(message.text, 'Grüße aus Köln: café, crème brûlée, £5.\n');
  },
  '18-windows-1251.eml': ({ message }) => {
    assert.equal(message.subject, 'Заказ отправлен');
    assert.equal(message.text, 'Привет! Ваш заказ отправлен.\n');
  },
  '19-koi8-r.eml': ({ message }) => {
    assert.equal(message.subject, 'Счёт');
    assert.equal(message.text, 'Счёт на оплату во вложении.');
  },
  '20-iso-2022-jp.eml': ({ message }) => {
    assert.equal(message.subject, 'ご注文');
    assert.equal(message.text, 'こんにちは、注文の件です。\n');
  },
  '21-gb18030.eml': ({ message }) => {
    assert.equal(message.subject, '发票');
    assert.equal(message.text, '您好，发票已附上。');
  },
  '22-shift-jis.eml': ({ message }) => {
    assert.equal(message.subject, 'お問い合わせ');
    assert.equal(message.text, 'お問い合わせありがとうございます。');
  },
  '23-rfc2047-headers.eml': ({ message }) => {
    assert.equal(message.subject, 'Café und Käse €10');
    assert.deepEqual(message.from, [{ name: 'Jürgen Müller', address: 'juergen@sender.test' }]);
    assert.deepEqual(message.cc, [
      { name: 'Renée', address: 'renee@sender.test' },
      { name: '', address: 'plain@sender.test' },
    ]);
  },
  '24-rfc2231-filename.eml': (payload) =>
    assert.deepEqual(filenames(payload), ['报告.pdf', 'Grüße aus Köln und einem sehr langen Namen.txt']),
  '25-rfc2047-filename.eml': (payload) => assert.deepEqual(filenames(payload), ['Отчёт.pdf']),
  '26-html-only.eml': ({ message }) => {
    assert.match(message.text!, /Your account is ready\./);
    assert.match(message.html!, /<h1>Welcome<\/h1>/);
  },
  '27-quoted-printable.eml': ({ message }) =>
    assert.match(message.text!, /^This is a long line .* a tab\tinside\.\n?$/),
  '28-format-flowed.eml': ({ message }) =>
    assert.equal(
      message.strippedText,
      'This paragraph is flowed across several lines by the client and should join up.',
    ),
  '29-multiple-attachments.eml': (payload) => {
    assert.deepEqual(filenames(payload), ['data.csv', 'data.csv', null]);
    assert.notEqual(payload.message.attachments[0]!.sha256, payload.message.attachments[1]!.sha256);
  },
  '31-group-addresses.eml': ({ message }) => {
    assert.deepEqual(message.to, []);
    assert.deepEqual(
      message.cc.map((a) => a.address),
      ['ann@sender.test', 'ben@sender.test', 'carl@sender.test'],
    );
    assert.deepEqual(message.replyTo, [{ name: 'Replies', address: 'replies@sender.test' }]);
  },
  '32-bare-lf.eml': (payload) => assert.ok(payload.warnings.some((w) => w.startsWith('bare_lf'))),
  '33-deeply-nested.eml': (payload) => {
    assert.equal(payload.message.text, 'Deep text.');
    assert.deepEqual(filenames(payload), [null, 'readme.txt']);
  },
  '36-smtputf8-address.eml': ({ message }) => {
    assert.deepEqual(message.from, [{ name: '用户', address: '用户@例子.test' }]);
    assert.equal(message.subject, '国际化地址');
  },
  '37-invalid-date.eml': (payload) => {
    assert.equal(payload.message.date, null);
    assert.deepEqual(payload.warnings, [
      'invalid_date: Date header "not a date at all" is not a date in years 0000-9999',
    ]);
  },
  '39-html-with-attachment.eml': ({ message }) => {
    // No text part, and the HTML not the whole message: the text is still made from it.
    assert.match(message.text!, /THANK YOU\n\nOrder #4711 is paid: 12,50 €\.\n\nThe receipt is attached\./);
    assert.equal(message.strippedText, message.text!.trim());
    assert.deepEqual(
      message.attachments.map((a) => a.filename),
      ['receipt-4711.pdf'],
    );
  },
  '38-duplicate-headers.eml': ({ message }) => {
    assert.deepEqual(
      message.headers.slice(0, 2).map((h) => h.name),
      ['Received', 'Received'],
    );
    assert.deepEqual(
      message.headers.filter((h) => h.name === 'X-Tag').map((h) => h.value),
      ['one', 'two'],
    );
    assert.equal(message.headers.find((h) => h.name === 'X-Folded')!.value, 'first part\tsecond part');
  },
};

describe('fixture corpus', () => {
  let h: ParseHarness;
  const payloads = new Map<string, WebhookPayload>();
  const stored = new Map<string, InboundEvent>();
  let names: string[] = [];

  before(async () => {
    h = await startParseHarness();
    names = (await readdir(FIXTURES)).filter((name) => name.endsWith('.eml')).sort();
    const events = await Promise.all(names.map(async (name) => h.store(await h.fixture(name))));
    const parse = h.handler();
    // Lambda's default SQS batch size is 10.
    for (let start = 0; start < events.length; start += 10) {
      assert.deepEqual(await parse(sqsEvent(events.slice(start, start + 10))), { batchItemFailures: [] });
    }
    const byId = new Map<string, string>();
    events.forEach((event, index) => {
      stored.set(names[index]!, event);
      byId.set(event.id, names[index]!);
    });
    for (const job of await h.drainJobs()) payloads.set(byId.get(job.messageId)!, await h.payload(job));
  });
  after(() => h.close());

  it('has at least 30 messages, each giving one schema-valid payload', () => {
    assert.ok(names.length >= 30, `${names.length} fixtures`);
    assert.deepEqual([...payloads.keys()].sort(), names);
    for (const [name, payload] of payloads) {
      // Each payload is its own message's: its id and the measured raw object it links to.
      const event = stored.get(name)!;
      assert.equal(payload.id, event.id, name);
      assert.deepEqual(
        { size: payload.raw.size, sha256: payload.raw.sha256 },
        { size: event.raw.size, sha256: event.raw.sha256 },
        name,
      );
      assert.ok(payload.message.headers.length > 0, `${name} has headers`);
      assert.ok(
        !payload.warnings.some((w) => w.startsWith('mime_parse_failed')),
        `${name}: ${payload.warnings}`,
      );
    }
  });

  it('the schema check refuses what the schema refuses: a receivedAt that is not an RFC 3339 date-time', () => {
    const payload = payloads.get('02-alternative.eml');
    assert.ok(payload);
    assert.throws(
      () => assertSchemaValid({ ...payload, receivedAt: 'yesterday' }),
      /receivedAt must match format "date-time"/,
    );
  });

  for (const [name, check] of Object.entries(EXPECT)) {
    it(`reads ${name} as its recipient would`, () => {
      const payload = payloads.get(name);
      assert.ok(payload, `no payload for ${name}`);
      check(payload);
    });
  }
});
