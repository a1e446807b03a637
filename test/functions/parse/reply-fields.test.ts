import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import {
  bounceFromReport,
  isDeliveryReport,
  parseDeliveryStatus,
  readDeliveryReport,
} from '../../../functions/parse/bounce.ts';
import { containerFormat } from '../../../functions/parse/containers.ts';
import { messageFlags } from '../../../functions/parse/flags.ts';
import { findForwarded, parseForwardedSender } from '../../../functions/parse/forwarded.ts';
import { stripQuotedHtml } from '../../../functions/parse/stripped-html.ts';
import { splitReply } from '../../../functions/parse/stripped-text.ts';

const REPLY_FIXTURES = new URL('../../../harness/fixtures/reply-by-email/', import.meta.url);
const MARKER = '## Please type your reply above this line ##';
const h = (name: string, value: string) => ({ name, value });
const flags = (
  headers: { name: string; value: string }[],
  mailFrom = 'ann@sender.test',
  deliveryReport = false,
) => messageFlags({ headers, mailFrom, deliveryReport, from: [{ address: 'ann@sender.test' }] });

describe('message.flags', () => {
  it('marks auto-replies by RFC 3834 Auto-Submitted, X-Autoreply, X-Autorespond, Precedence and a null sender', () => {
    assert.equal(flags([h('Auto-Submitted', 'auto-replied')]).autoReply, true);
    assert.equal(flags([h('auto-submitted', 'auto-generated; owner-email="a@b.test"')]).autoReply, true);
    assert.equal(flags([h('Auto-Submitted', 'no')]).autoReply, false, 'RFC 3834 §5: "no" is a person');
    assert.equal(flags([h('X-Autoreply', 'yes')]).autoReply, true);
    assert.equal(flags([h('X-Autorespond', 'Out of office')]).autoReply, true);
    for (const kind of ['auto_reply', 'bulk', 'junk', 'list', 'Bulk'])
      assert.equal(flags([h('Precedence', kind)]).autoReply, true, kind);
    assert.equal(flags([h('Precedence', 'first-class')]).autoReply, false);
    assert.equal(flags([], '').autoReply, true, 'null reverse-path');
    assert.deepEqual(flags([h('Subject', 'Hello')]), { autoReply: false, bulk: false, bounce: false });
  });

  it('marks bulk mail by List-Id, List-Unsubscribe or Precedence: bulk', () => {
    assert.equal(flags([h('List-Id', '<news.sender.test>')]).bulk, true);
    assert.equal(flags([h('List-Unsubscribe', '<https://sender.test/u>')]).bulk, true);
    assert.equal(flags([h('Precedence', 'bulk')]).bulk, true);
    assert.equal(flags([h('Precedence', 'junk')]).bulk, false);
  });

  it('marks a delivery report, and a MAILER-DAEMON message from a null sender, as a bounce', () => {
    assert.equal(flags([], 'ann@sender.test', true).bounce, true);
    const daemon = messageFlags({
      headers: [],
      mailFrom: '',
      deliveryReport: false,
      from: [{ address: 'MAILER-DAEMON@relay.sender.test' }],
    });
    assert.equal(daemon.bounce, true);
    assert.equal(flags([], '').bounce, false, 'a null sender alone is an auto-reply, not a bounce');
  });
});

describe('message.bounce', () => {
  it('recognises multipart/report; report-type=delivery-status only', () => {
    assert.ok(
      isDeliveryReport([h('Content-Type', 'multipart/report; report-type=delivery-status;\tboundary="b"')]),
    );
    assert.ok(
      isDeliveryReport([h('content-type', 'multipart/report; report-type="global-delivery-status"')]),
    );
    assert.ok(
      !isDeliveryReport([h('Content-Type', 'multipart/report; report-type=disposition-notification')]),
    );
    assert.ok(!isDeliveryReport([h('Content-Type', 'multipart/mixed')]));
  });

  it('reads the per-recipient fields of RFC 3464, unfolded, without the address type', () => {
    const reports = parseDeliveryStatus(
      'Reporting-MTA: dns; relay.test\r\n\r\nFinal-Recipient: rfc822; a@x.test\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n' +
        'Original-Recipient: rfc822;b@x.test\r\nFinal-Recipient: RFC822; <b@x.test>\r\nAction: Failed\r\nStatus: 5.1.1 (user unknown)\r\n' +
        'Diagnostic-Code: smtp; 550 5.1.1 no such\r\n    user here\r\n',
    );
    assert.deepEqual(reports, [
      {
        action: 'delayed',
        status: '4.4.1',
        finalRecipient: 'a@x.test',
        originalRecipient: null,
        diagnosticCode: null,
      },
      {
        action: 'failed',
        status: '5.1.1',
        finalRecipient: 'b@x.test',
        originalRecipient: 'b@x.test',
        diagnosticCode: 'smtp; 550 5.1.1 no such user here',
      },
    ]);
  });

  it('reports the first failed recipient, and the returned Message-ID', () => {
    const bounce = bounceFromReport({
      deliveryStatus:
        'Final-Recipient: rfc822; a@x.test\nAction: delayed\n\nFinal-Recipient: rfc822; b@x.test\nAction: failed\nStatus: 5.2.2\n',
      originalMessageId: '<m1@app.test>',
    });
    assert.deepEqual(bounce, {
      action: 'failed',
      status: '5.2.2',
      finalRecipient: 'b@x.test',
      diagnosticCode: null,
      originalMessageId: '<m1@app.test>',
    });
    assert.equal(bounceFromReport({ deliveryStatus: null, originalMessageId: null }), null);
  });

  it('finds the delivery-status part and the returned message in a Postfix and an Exchange report', async () => {
    const postfix = await readDeliveryReport(
      Readable.from([await readFile(new URL('postfix-dsn.eml', REPLY_FIXTURES))]),
    );
    assert.match(postfix.deliveryStatus!, /X-Postfix-Queue-ID: 4TDq4k3bQFz9sZ/);
    assert.equal(postfix.originalMessageId, '<ticket-1234-update-3@example.test>');
    const exchange = await readDeliveryReport(
      Readable.from([await readFile(new URL('exchange-online-dsn.eml', REPLY_FIXTURES))]),
    );
    assert.match(exchange.deliveryStatus!, /RESOLVER\.ADR\.RecipientNotFound/);
    assert.equal(exchange.originalMessageId, '<ticket-77-update-1@example.test>');
  });

  it('decodes a delivery-status part sent in base64', async () => {
    const status = 'Final-Recipient: rfc822; gone@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n';
    const report = [
      'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
      '',
      '--r',
      'Content-Type: message/delivery-status',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(`Reporting-MTA: dns; relay.test\r\n\r\n${status}`).toString('base64'),
      '--r',
      'Content-Type: text/rfc822-headers',
      '',
      'Message-ID: <sent-1@app.test>',
      'Subject: hi',
      '--r--',
      '',
    ].join('\r\n');
    const parts = await readDeliveryReport(Readable.from([Buffer.from(report)]));
    assert.deepEqual(bounceFromReport(parts), {
      action: 'failed',
      status: '5.1.1',
      finalRecipient: 'gone@x.test',
      diagnosticCode: null,
      originalMessageId: '<sent-1@app.test>',
    });
  });
});

describe('splitReply: stripped text and signature', () => {
  it('splits off an RFC 3676 signature and keeps the reply', () => {
    assert.deepEqual(splitReply('Thanks\n-- \nBob\nCEO\n\nOn Mon, 1 Jan 2024, Ann wrote:\n> hi'), {
      text: 'Thanks',
      signature: 'Bob\nCEO',
    });
    assert.deepEqual(splitReply('No signature here.'), { text: 'No signature here.', signature: null });
  });

  it('treats mail apps footers alike: iPhone, Android, Outlook, in several languages', () => {
    for (const footer of [
      'Sent from my iPhone',
      'Sent from my Samsung Galaxy smartphone.',
      'Sent from Outlook for Android',
      'Get Outlook for iOS',
      'Sent from Mail for Windows',
      'Von meinem iPhone gesendet',
      'Envoyé de mon iPad',
      'Enviado desde mi Android',
      'Verzonden vanaf mijn iPhone',
    ]) {
      assert.deepEqual(splitReply(`OK, done.\n\n${footer}\n\n> On Mon, Ann wrote:\n> old`), {
        text: 'OK, done.',
        signature: footer,
      });
    }
    assert.equal(splitReply('Sent from the office, as agreed.').signature, null, 'no device named');
  });

  it('cuts at a route reply marker, quoted or not, in any case', () => {
    const reply = `Works now.\n\nOn Tue, Acme wrote:\n> ${MARKER}\n> Your ticket was updated.`;
    assert.equal(splitReply(reply, { markers: [MARKER] }).text, 'Works now.');
    const unquoted = `Works now.\n${MARKER.toUpperCase()}\nYour ticket was updated.\nAcme`;
    assert.equal(splitReply(unquoted, { markers: [MARKER] }).text, 'Works now.');
    assert.equal(splitReply(unquoted).text, unquoted, 'without the marker configured, nothing is cut');
  });
});

describe('stripQuotedHtml', () => {
  it('cuts Gmail quotes and signature', () => {
    const html =
      '<div dir="ltr">Fixed.<br><span class="gmail_signature_prefix">-- </span><div class="gmail_signature">Jane</div></div>' +
      '<div class="gmail_quote"><div class="gmail_attr">On Tue, Acme wrote:</div><blockquote class="gmail_quote">old</blockquote></div>';
    assert.equal(stripQuotedHtml(html), '<div dir="ltr">Fixed.<br></div>');
  });

  it('cuts Outlook desktop, Outlook on the web and Apple Mail history', () => {
    assert.equal(
      stripQuotedHtml(
        '<div><p>Yes.</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in"><p><b>From:</b> Bob</p></div><p>old text</p></div>',
      ),
      '<div><p>Yes.</p></div>',
    );
    assert.equal(
      stripQuotedHtml(
        '<div>Yes.</div><hr style="display:inline-block"><div id="divRplyFwdMsg"><b>From:</b> Bob</div><div>old</div>',
      ),
      '<div>Yes.</div><hr style="display:inline-block">',
    );
    assert.equal(
      stripQuotedHtml(
        '<div>Yes.</div><div dir="ltr">Sent from my iPhone</div><blockquote type="cite">old</blockquote>',
      ),
      '<div>Yes.</div>',
    );
  });

  it('keeps an inline reply: quotes followed by more typed text', () => {
    const inline =
      '<blockquote type="cite">Question?</blockquote><div>Answer.</div><blockquote type="cite">More?</blockquote><div>Yes.</div>';
    assert.equal(stripQuotedHtml(inline), inline);
  });

  it('cuts at the element holding a reply marker', () => {
    assert.equal(
      stripQuotedHtml(`<div>Thanks!</div><div>${MARKER}</div><div>Your ticket was updated.</div>`, {
        markers: [MARKER],
      }),
      '<div>Thanks!</div>',
    );
  });

  it('reads hostile nesting without running out of stack in its own walk', () => {
    const deep = `${'<div>'.repeat(20_000)}x${'</div>'.repeat(20_000)}<blockquote type="cite">old</blockquote>`;
    try {
      assert.ok(!stripQuotedHtml(deep).includes('old'));
    } catch (error) {
      // The serializer recurses: a RangeError is what the caller turns into a warning.
      assert.ok(error instanceof RangeError, String(error));
    }
  });
});

describe('message.forwarded', () => {
  it('reads the senders forwards write', () => {
    assert.deepEqual(parseForwardedSender('Dana Whitfield <dana@customer.example>'), {
      name: 'Dana Whitfield',
      address: 'dana@customer.example',
    });
    assert.deepEqual(parseForwardedSender('"Baker, Erin" [mailto:erin@fabrikam.example]'), {
      name: 'Baker, Erin',
      address: 'erin@fabrikam.example',
    });
    assert.deepEqual(parseForwardedSender('erin@fabrikam.example'), {
      name: '',
      address: 'erin@fabrikam.example',
    });
    assert.deepEqual(parseForwardedSender('Erin Baker'), { name: 'Erin Baker', address: null });
  });

  it('finds Gmail, Apple Mail and Thunderbird forward blocks, and Outlook ones under a forward subject', () => {
    const gmail =
      'FYI\n\n---------- Forwarded message ---------\n*From:* Dana <dana@c.example>\n*Date:* Mon, 15 Jan 2024 at 16:42\n*Subject:* Invoice\n*To:* Pat <p@x.test>\n\nbody';
    assert.deepEqual(findForwarded({ subject: 'Fwd: Invoice', text: gmail }), {
      from: { name: 'Dana', address: 'dana@c.example' },
      subject: 'Invoice',
      date: 'Mon, 15 Jan 2024 at 16:42',
    });
    const apple =
      'See below\n\nBegin forwarded message:\n\nFrom: Dana <dana@c.example>\nSubject: Invoice\nDate: 15 January 2024 at 16:42:00 CET\nTo: Pat <p@x.test>\n\nbody';
    assert.equal(findForwarded({ subject: 'Invoice', text: apple })?.subject, 'Invoice');
    const thunderbird =
      '-------- Forwarded Message --------\nSubject: \tInvoice\nDate: \tMon, 15 Jan 2024 16:42:00 +0100\nFrom: \tDana <dana@c.example>\n\nbody';
    assert.equal(
      findForwarded({ subject: 'Fwd: Invoice', text: thunderbird })?.from?.address,
      'dana@c.example',
    );
    const outlook =
      'Please handle.\n\n________________________________\nFrom: Erin Baker <erin@f.example>\nSent: Tuesday, January 16, 2024 9:30 AM\nTo: Carl\nSubject: Renewal\n\nHi';
    assert.equal(findForwarded({ subject: 'FW: Renewal', text: outlook })?.subject, 'Renewal');
    assert.equal(
      findForwarded({ subject: 'WG: Renewal', text: outlook })?.subject,
      'Renewal',
      'German Outlook',
    );
  });

  it('does not call an Outlook reply a forward', () => {
    const reply =
      'Agreed.\n\n________________________________\nFrom: Erin Baker <erin@f.example>\nSent: Tuesday\nSubject: Renewal\n\nHi';
    assert.equal(findForwarded({ subject: 'RE: Renewal', text: reply }), null);
  });

  it('takes an attached message as the original of a forward', () => {
    const attachedMessage = {
      from: { name: 'Erin', address: 'erin@f.example' },
      subject: 'Renewal',
      date: null,
    };
    assert.deepEqual(
      findForwarded({ subject: 'Fw: Renewal', text: 'see attached', attachedMessage }),
      attachedMessage,
    );
    assert.equal(findForwarded({ subject: 'Renewal', text: 'see attached', attachedMessage }), null);
  });
});

describe('container attachments', () => {
  it('recognises winmail.dat and .msg by type or name', () => {
    assert.equal(
      containerFormat({ filename: 'winmail.dat', contentType: 'application/octet-stream' }),
      'tnef',
    );
    assert.equal(containerFormat({ filename: null, contentType: 'application/ms-tnef' }), 'tnef');
    assert.equal(
      containerFormat({ filename: 'Re: Quote.msg', contentType: 'application/octet-stream' }),
      'msg',
    );
    assert.equal(containerFormat({ filename: 'a.pdf', contentType: 'application/pdf' }), null);
  });
});
