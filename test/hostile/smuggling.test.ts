import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { queuedId, RawSmtp, readObject, testConfig, useListener } from '../listener/helpers.ts';

// SMTP smuggling (CVE-2023-51764 class, postfix.org/smtp-smuggling.html): a receiver that takes a
// sloppy end-of-data for the end turns the rest of one message into a second, forged, one. Only
// <CR><LF>.<CR><LF> ends DATA (RFC 5321 §4.1.1.4); every near miss must stay message content.
const ENDINGS: readonly [name: string, bytes: string][] = [
  ['<LF>.<LF>', '\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
  ['<CR><LF>.<CR>', '\r\n.\r'],
  ['<CR>.<CR><LF>', '\r.\r\n'],
  ['<LF>..<LF>', '\n..\n'],
  ['<CR><LF>.<NUL><CR><LF>', '\r\n.\0\r\n'],
];

const hasBareLf = (text: string) => /(^|[^\r])\n/.test(text);

interface Case {
  readonly tag: string;
  readonly body: string;
  readonly smuggledSender: string;
}

function smugglingCase(index: number, ending: string, smuggle: boolean, prefix: string): Case {
  const tag = `${prefix}${index}${smuggle ? 's' : ''}`;
  const smuggledSender = `smuggled-${tag}@evil.test`;
  const smuggled = smuggle
    ? `MAIL FROM:<${smuggledSender}>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nFrom: <ceo@example.test>\r\n\r\nForged\r\n`
    : '';
  return {
    tag,
    smuggledSender,
    body: `From: <a@sender.test>\r\nSubject: smuggling ${tag}\r\n\r\nbefore${ending}${smuggled}after\r\n`,
  };
}

/** Sends one message whose body ends with the real terminator, NOOP pipelined after it; returns every reply. */
async function sendCase(port: number, sender: string, body: string): Promise<string[]> {
  const client = await RawSmtp.open(port);
  await client.hello();
  assert.match(await client.command(`MAIL FROM:<${sender}>`), /^250 /);
  assert.match(await client.command('RCPT TO:<victim@example.test>'), /^250 /);
  assert.match(await client.command('DATA'), /^354 /);
  client.write(`${body}.\r\nNOOP\r\n`);
  const replies = [await client.reply(), await client.reply()];
  replies.push(await client.command('QUIT'));
  client.close();
  return replies;
}

describe('hostile input: SMTP smuggling, every end-of-data variant', () => {
  const t = useListener();

  for (const [index, [name, ending]] of ENDINGS.entries()) {
    for (const smuggle of [false, true]) {
      it(`${name}${smuggle ? ' followed by a smuggled MAIL FROM…DATA' : ''}: one message, one 250, bare LF recorded`, async () => {
        const c = smugglingCase(index, ending, smuggle, 'k');
        const sender = `smuggler-${c.tag}@sender.test`;
        const [queued, noop, quit] = await sendCase(t.listener.port('mx'), sender, c.body);
        assert.match(queued!, /^250 2\.0\.0 queued as /);
        assert.equal(noop, '250 2.0.0 OK', 'the next reply answers our NOOP: nothing else was executed');
        assert.match(quit!, /^221 /);
        const events = await t.events.from(sender);
        assert.equal(events.length, 1);
        const [event] = events;
        assert.equal(event!.id, queuedId(queued!));
        assert.equal(
          event!.bareLf === true,
          hasBareLf(c.body),
          'bareLf is set exactly when a line ends in a bare LF',
        );
        assert.deepEqual(await t.events.from(c.smuggledSender), []);
        const raw = (await readObject(t.emulator.s3, event!.raw.bucket, event!.raw.key)).toString('latin1');
        assert.ok(raw.includes('after\r\n'), 'what follows the near miss is kept inside the message');
        if (smuggle) assert.ok(raw.includes(`MAIL FROM:<${c.smuggledSender}>`));
      });
    }
  }
});

describe('hostile input: SMTP smuggling with limits.rejectBareLf', () => {
  const t = useListener(() => testConfig({ limits: { rejectBareLf: true } }));

  it('refuses each variant with a bare LF (550 5.6.0), accepts the others, and runs no smuggled command', async () => {
    for (const [index, [name, ending]] of ENDINGS.entries()) {
      const c = smugglingCase(index, ending, true, 'r');
      const sender = `strict-${c.tag}@sender.test`;
      const [reply, noop] = await sendCase(t.listener.port('mx'), sender, c.body);
      if (hasBareLf(c.body)) {
        assert.equal(reply, '550 5.6.0 Bare LF line endings are not allowed (RFC 5321 section 2.3.8)', name);
        assert.deepEqual(await t.events.from(sender), [], name);
      } else {
        assert.match(reply!, /^250 2\.0\.0 queued as /, name);
        assert.equal((await t.events.from(sender)).length, 1, name);
      }
      assert.equal(noop, '250 2.0.0 OK', name);
      assert.deepEqual(await t.events.from(c.smuggledSender), [], name);
    }
  });
});
