import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stripQuotedReply } from '../../../functions/parse/index.ts';

describe('stripQuotedReply', () => {
  it('cuts Gmail, Outlook and Apple Mail quoted history', () => {
    assert.equal(
      stripQuotedReply('Yes.\n\nOn Tue, 2 Jan 2024 at 10:00, Bob <b@x.test> wrote:\n> Can you?\n'),
      'Yes.',
    );
    assert.equal(
      stripQuotedReply('Ja.\r\n\r\nAm 02.01.2024 um 10:00 schrieb Bob <b@x.test>:\r\n> Kannst du?'),
      'Ja.',
    );
    assert.equal(
      stripQuotedReply('Oui.\n\nLe mar. 2 janv. 2024 à 10:00, Bob <b@x.test> a écrit :\n> ?'),
      'Oui.',
    );
    assert.equal(stripQuotedReply('OK\n\n-----Original Message-----\nFrom: Bob\nSent: Tuesday\n\nold'), 'OK');
    assert.equal(
      stripQuotedReply('OK\n\nFrom: Bob <b@x.test>\nSent: Tuesday, 2 January 2024\nTo: me\n\nold'),
      'OK',
    );
    assert.equal(
      stripQuotedReply('Fine\n\nSent from my iPad\n\n> On 2 Jan 2024, at 10:00, Bob wrote:\n> old'),
      'Fine',
    );
  });

  it('drops a signature and a trailing quote block but keeps inline replies', () => {
    assert.equal(stripQuotedReply('Thanks\n-- \nBob\nCEO'), 'Thanks');
    assert.equal(stripQuotedReply('Agreed.\n\n> earlier text\n> more\n\n'), 'Agreed.');
    const inline = '> Question one?\nAnswer one.\n> Question two?\nAnswer two.';
    assert.equal(stripQuotedReply(inline), inline);
  });

  it('keeps a "From:" line that is not an Outlook header block', () => {
    assert.equal(
      stripQuotedReply('From: the team, with thanks.\nSee you.'),
      'From: the team, with thanks.\nSee you.',
    );
  });
});
