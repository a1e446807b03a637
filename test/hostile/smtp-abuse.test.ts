import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { createTransport } from 'nodemailer';
import {
  delay,
  makeMessage,
  PASSWORD,
  proxyV2Header,
  queuedId,
  RawSmtp,
  readObject,
  splitTraceHeader,
  startTestListener,
  type TestListener,
  testConfig,
  USER,
  useEmulator,
  useListener,
} from '../listener/helpers.ts';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const OUR_DOMAINS = ['example.test', 'strict.test'];

/** One ordinary message from `sender` on a fresh MX session; returns the final reply. */
async function deliverOne(listener: TestListener, sender: string): Promise<string> {
  const client = await RawSmtp.open(listener.port('mx'));
  await client.hello();
  const reply = await client.send(sender, ['a@example.test'], makeMessage(300, sender));
  client.close();
  return reply;
}

/** The same through nodemailer, from `localAddress`; returns the final reply. */
async function sendWithNodemailer(listener: TestListener, sender: string, localAddress = '127.0.0.1') {
  const transport = createTransport({
    host: '127.0.0.1',
    port: listener.port('mx'),
    localAddress,
    secure: false,
    ignoreTLS: true,
  });
  const info = await transport.sendMail({
    envelope: { from: sender, to: ['a@example.test'] },
    raw: makeMessage(300, sender),
  });
  transport.close();
  return info.response;
}

/** Waits until the listener has no session open (server-side close events trail the client's). */
async function noSessionsLeft(listener: TestListener): Promise<number> {
  for (let i = 0; i < 50 && listener.sessions() > 0; i++) await delay(100);
  return listener.sessions();
}

/** A connection from `localAddress` (any 127/8 address is loopback) and its first reply line, "" if closed unanswered. */
async function greetingFrom(
  port: number,
  localAddress: string,
): Promise<{ socket: Socket; greeting: string }> {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => {});
  const greeting = await new Promise<string>((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(text), 10_000);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n')) {
        clearTimeout(timer);
        resolve(text.split('\r\n')[0]!);
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text.split('\r\n')[0]!);
    });
  });
  return { socket, greeting };
}

/** The first bytes a TLS client sends (its ClientHello), captured without any network. */
async function clientHello(): Promise<Buffer> {
  let captured: (hello: Buffer) => void = () => {};
  const hello = new Promise<Buffer>((resolve) => {
    captured = resolve;
  });
  const wire = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      captured(Buffer.from(chunk));
      callback();
    },
  });
  const tls = tlsConnect({ socket: wire, rejectUnauthorized: false, servername: 'mx.mailbridge.test' });
  tls.on('error', () => {});
  const bytes = await hello;
  tls.destroy();
  wire.destroy();
  return bytes;
}

describe('hostile input: open relay tricks', () => {
  const t = useListener();

  // Addresses smtp-server parses: each must be refused (5.7.1 for a foreign domain, 5.1.1 for a
  // mailbox of ours no route takes) or be refused as bad syntax; none may be relayed.
  const tricks = [
    'user@other.test',
    'USER@OTHER.TEST',
    'user%other.test@strict.test',
    'user!other.test@strict.test',
    'other.test!user@strict.test',
    '@strict.test:user@other.test',
    '@example.test,@strict.test:user@other.test',
    '"user@other.test"@strict.test',
    '"user@other.test"@example.test',
    '"user"@other.test',
    'user@other.test@example.test',
    'user@other.test.',
    'user@example.test.',
    'user@example.test.other.test',
    'user@sub.example.test',
    'user@xn--exmple-4nf.test',
    'user@ex\u0430mple.test',
    'user@example.tes\u0442',
    'user@[127.0.0.1]',
    'user@[IPv6:::1]',
    'user@localhost',
    'postmaster',
    'user@other.test#@example.test',
    'user@example.test\\@other.test',
  ];

  it('refuses every foreign-domain trick with 550 5.7.1, 550 5.1.1 or a syntax error, never 250', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    assert.match(await client.command('MAIL FROM:<relay@sender.test> SMTPUTF8'), /^250 /);
    for (const trick of tricks) {
      client.write(Buffer.from(`RCPT TO:<${trick}>\r\n`, 'utf8'));
      const reply = await client.reply();
      assert.match(
        reply,
        /^(550 5\.7\.1 Relaying denied|550 5\.1\.1 Mailbox|501 5\.1\.3 )/,
        `${trick}: ${reply}`,
      );
    }
    client.close();
  });

  it('keeps every recipient it does accept inside our domains, whatever the case or local-part tricks', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    await client.command('MAIL FROM:<relay-accepted@sender.test>');
    const accepted: string[] = [];
    for (const candidate of [
      'UPPER@EXAMPLE.TEST',
      'mixed@EXAMPLE.test',
      'KNOWN@STRICT.TEST',
      'user%other.test@example.test',
      'other.test!user@example.test',
      ...tricks,
    ]) {
      client.write(Buffer.from(`RCPT TO:<${candidate}>\r\n`, 'utf8'));
      if ((await client.reply()).startsWith('250')) accepted.push(candidate);
    }
    assert.equal(accepted.length, 5, accepted.join(', '));
    assert.match(await client.command('DATA'), /^354 /);
    client.write(makeMessage(200, 'relay'));
    const reply = await client.command('.');
    const event = await t.events.get(queuedId(reply));
    assert.equal(event.envelope.rcptTo.length, 5);
    for (const recipient of event.envelope.rcptTo) {
      const domain = recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase();
      assert.ok(OUR_DOMAINS.includes(domain), recipient);
    }
    client.close();
  });
});

describe('hostile input: oversized lines and binary garbage', () => {
  const t = useListener();

  it('answers a 10 MB command line cleanly and keeps serving; a 10 MB DATA line is stored', async () => {
    const flood = await RawSmtp.open(t.listener.port('mx'));
    flood.write(Buffer.alloc(10 * 1024 * 1024, 'A'));
    assert.match(await flood.reply(), /^421 4\.4\.2 Error: Command line too long$/);
    flood.close();
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    const line = Buffer.concat([
      Buffer.from('Subject: long\r\n\r\n'),
      Buffer.alloc(10 * 1024 * 1024, 'B'),
      Buffer.from('\r\n'),
    ]);
    const reply = await client.send('longline@sender.test', ['someone@example.test'], line);
    const event = await t.events.get(queuedId(reply));
    const { rest } = splitTraceHeader(await readObject(t.emulator.s3, event.raw.bucket, event.raw.key));
    assert.ok(rest.equals(line));
    client.close();
  });

  it('answers NUL bytes and 8-bit garbage with clean replies, stores such bodies as sent, and keeps serving', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    assert.equal(await client.command('EHLO a\0b'), '501 Error: Bad hostname syntax');
    await client.hello();
    assert.equal(
      await client.command('MAIL FROM:<a\0b@sender.test>'),
      '501 5.1.7 Error: Bad sender address syntax',
    );
    const garbage = Buffer.from(Array.from({ length: 300 }, (_, i) => 0x80 + (i % 0x80)));
    client.write(Buffer.concat([garbage, Buffer.from('\r\n')]));
    assert.equal(await client.reply(), '500 5.5.2 Error: command not recognized');
    const body = Buffer.concat([
      Buffer.from('Subject: binary\r\n\r\nnul:\0\0\0 end\r\n'),
      garbage,
      Buffer.from('\r\n'),
    ]);
    const reply = await client.send('binary@sender.test', ['someone@example.test'], body);
    const event = await t.events.get(queuedId(reply));
    const { rest } = splitTraceHeader(await readObject(t.emulator.s3, event.raw.bucket, event.raw.key));
    assert.ok(rest.equals(body));
    const next = await client.send(
      'normal@sender.test',
      ['someone@example.test'],
      makeMessage(500, 'normal'),
    );
    assert.match(next, /^250 2\.0\.0 queued as /);
    client.close();
  });
});

describe('hostile input: STARTTLS command injection', () => {
  const t = useListener(() => testConfig({ limits: { socketTimeout: '2s' } }));

  it('drops commands pipelined behind STARTTLS (the classic STARTTLS\\r\\nRSET\\r\\n, here MAIL and RCPT): the first reply inside TLS answers our own EHLO, no state carried over', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    await client.startTls('MAIL FROM:<injected@evil.test>\r\nRCPT TO:<victim@example.test>\r\n');
    const ehlo = await client.hello();
    assert.match(ehlo, /^250-mx\.mailbridge\.test/, 'the first reply inside TLS answers our EHLO');
    assert.equal(await client.command('RCPT TO:<victim@example.test>'), '503 5.5.1 Error: need MAIL command');
    const reply = await client.send(
      'honest@sender.test',
      ['victim@example.test'],
      makeMessage(400, 'honest'),
    );
    assert.equal((await t.events.get(queuedId(reply))).envelope.mailFrom, 'honest@sender.test');
    assert.deepEqual(await t.events.from('injected@evil.test'), []);
    client.close();
  });

  it('sends a STARTTLS with the ClientHello in the same segment nowhere: no command runs, the session ends', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    client.write(Buffer.concat([Buffer.from('STARTTLS\r\n'), await clientHello()]));
    assert.equal(await client.reply(), '220 2.0.0 Ready to start TLS');
    // The bytes behind STARTTLS arrived in plaintext and are dropped, the handshake never starts,
    // and the session ends at the socket timeout.
    assert.equal(await client.reply(10_000), '');
    assert.ok(client.closed);
    assert.equal(await noSessionsLeft(t.listener), 0);
  });

  it('fails the handshake when plaintext is injected in front of the ClientHello, and keeps serving', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    assert.equal(await client.command('STARTTLS'), '220 2.0.0 Ready to start TLS');
    client.write(
      Buffer.concat([
        Buffer.from('MAIL FROM:<injected-3@evil.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\n'),
        await clientHello(),
      ]),
    );
    assert.equal(await client.reply(10_000), '');
    assert.ok(client.closed, 'the server closed the connection');
    assert.deepEqual(await t.events.from('injected-3@evil.test'), []);
    const next = await RawSmtp.open(t.listener.port('mx'));
    await next.hello();
    await next.startTls();
    await next.hello();
    assert.match(
      await next.send('after@sender.test', ['a@example.test'], makeMessage(300, 'after')),
      /^250 /,
    );
    next.close();
    assert.equal(await noSessionsLeft(t.listener), 0);
  });
});

describe('hostile input: AUTH brute force and connection floods', () => {
  const t = useEmulator();

  it('counts AUTH failures per address across connections and ports; then even the right password gets 421', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { maxAuthFailuresPerIp: 3 } }));
    const wrongPlain = `AUTH PLAIN ${b64(`\0${USER}\0guess`)}`;
    const first = await RawSmtp.open(listener.port('implicit-tls'), { tls: true });
    await first.hello();
    assert.equal(await first.command(wrongPlain), '535 5.7.8 Authentication credentials invalid');
    first.close();
    const second = await RawSmtp.open(listener.port('submission'));
    await second.hello();
    await second.startTls();
    await second.hello();
    assert.match(await second.command('AUTH LOGIN'), /^334 /);
    assert.match(await second.command(b64(USER)), /^334 /);
    assert.equal(await second.command(b64('guess 2')), '535 5.7.8 Authentication credentials invalid');
    // Garbage base64 is a syntax error, not a password check: it neither counts nor slips through.
    assert.match(await second.command('AUTH PLAIN !!!not-base64!!!'), /^(501|535) /);
    second.close();
    const third = await RawSmtp.open(listener.port('implicit-tls'), { tls: true });
    await third.hello();
    const reply = await third.command(wrongPlain);
    assert.equal(reply, '421 4.7.0 Too many authentication failures, try again later');
    for (const port of [listener.port('submission'), listener.port('implicit-tls')]) {
      const again = await RawSmtp.open(port, {
        tls: port === listener.port('implicit-tls'),
        greeting: false,
      });
      assert.equal(await again.reply(), '421 4.7.0 Too many authentication failures, try again later');
      again.close();
    }
    third.close();
    await listener.close();
  });

  it('stops a parallel brute force at the limit: 30 simultaneous guesses get limit - 1 checks, a late right password 421', async () => {
    const limit = 5;
    const listener = await startTestListener(
      t.emulator,
      testConfig({
        limits: { maxAuthFailuresPerIp: limit, maxConnectionsPerIp: 50, maxConnectionsPerNetwork: 50 },
      }),
    );
    const clients = await Promise.all(
      Array.from({ length: 31 }, () => RawSmtp.open(listener.port('implicit-tls'), { tls: true })),
    );
    await Promise.all(clients.map((client) => client.hello()));
    const honest = clients.pop()!;
    const replies = await Promise.all(
      clients.map((client, i) => client.command(`AUTH PLAIN ${b64(`\0${USER}\0guess ${i}`)}`)),
    );
    const counts = new Map<string, number>();
    for (const reply of replies) counts.set(reply, (counts.get(reply) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries(counts), {
      '535 5.7.8 Authentication credentials invalid': limit - 1,
      '421 4.7.0 Too many authentication failures, try again later': clients.length - (limit - 1),
    });
    assert.equal(
      await honest.command(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`),
      '421 4.7.0 Too many authentication failures, try again later',
    );
    for (const client of [...clients, honest]) client.close();
    await listener.close();
  });

  it('answers a flood beyond maxConnections with 421 4.7.0 (or drops it), leaks no session and then serves a legit client', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ limits: { maxConnections: 20, maxConnectionsPerIp: 20 } }),
    );
    const flood = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        greetingFrom(listener.port(i % 2 ? 'mx' : 'submission'), '127.0.0.1'),
      ),
    );
    const greetings = flood.map(({ greeting }) => greeting);
    assert.equal(greetings.filter((greeting) => greeting.startsWith('220 ')).length, 20);
    for (const greeting of greetings.filter((text) => !text.startsWith('220 '))) {
      assert.ok(['421 4.7.0 Too many connections, try again later', ''].includes(greeting), greeting);
    }
    for (const { socket } of flood) socket.destroy();
    assert.equal(await noSessionsLeft(listener), 0);
    assert.match(await deliverOne(listener, 'legit@sender.test'), /^250 /);
    await listener.close();
  });

  it('holds one address to maxConnectionsPerIp while other addresses are still served', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ limits: { maxConnections: 100, maxConnectionsPerIp: 5 } }),
    );
    const flood = await Promise.all(
      Array.from({ length: 30 }, () => greetingFrom(listener.port('mx'), '127.0.0.2')),
    );
    const greetings = flood.map(({ greeting }) => greeting);
    assert.equal(greetings.filter((greeting) => greeting.startsWith('220 ')).length, 5);
    assert.equal(
      greetings.filter((greeting) => greeting === '421 4.7.0 Too many connections from your address').length,
      25,
    );
    assert.match(
      await sendWithNodemailer(listener, 'other-address@sender.test', '127.0.0.3'),
      /^250 2\.0\.0 queued as /,
    );
    for (const { socket } of flood) socket.destroy();
    assert.equal(await noSessionsLeft(listener), 0);
    await listener.close();
  });
});

describe('hostile input: senders that stall mid-DATA', () => {
  const t = useListener(() => testConfig({ limits: { spoolMemoryBytes: 5 * 1024 * 1024, spoolWait: '1s' } }));

  it('answers 451 4.3.1 to a message that finds no room in the spool memory budget, and stores nothing of it', async () => {
    // The first sender holds 4.5 MiB of the 5 MiB budget and stalls; the second needs 2 MiB.
    const holder = await RawSmtp.open(t.listener.port('mx'));
    await holder.startData('holder@sender.test', 'someone@example.test');
    const held = makeMessage(4.5 * 1024 * 1024, 'holder');
    await new Promise<void>((resolve) => holder.socket.write(held, () => resolve()));
    const late = await RawSmtp.open(t.listener.port('mx'));
    await late.hello();
    const reply = await late.send(
      'late@sender.test',
      ['someone@example.test'],
      makeMessage(2 * 1024 * 1024, 'late'),
    );
    assert.equal(reply, '451 4.3.1 Mail system busy, try again later');
    assert.deepEqual(await t.events.from('late@sender.test'), []);
    // The session goes on: the sender may try again at once, and the holder's message is whole.
    assert.equal(await late.command('NOOP'), '250 2.0.0 OK');
    holder.write('.\r\n');
    const event = await t.events.get(queuedId(await holder.reply()));
    assert.equal(event.envelope.mailFrom, 'holder@sender.test');
    assert.match(
      await late.send('late@sender.test', ['someone@example.test'], makeMessage(2 * 1024 * 1024, 'again')),
      /^250 2\.0\.0 queued as /,
    );
    holder.close();
    late.close();
  });
});

describe('hostile input: slow senders competing for the spool memory budget', () => {
  const t = useListener(() => testConfig({ limits: { spoolMemoryBytes: 5 * 1024 * 1024, spoolWait: '1s' } }));

  it('lets an older message that waited in vain take room from a younger one: the younger gets 451 4.3.1, both older ones 250', async () => {
    const port = t.listener.port('mx');
    const write = (client: RawSmtp, data: Buffer) =>
      new Promise<void>((resolve) => client.socket.write(data, () => resolve()));
    // Ages: oldest, older, younger; each message holds budget from its first bytes on.
    const oldest = await RawSmtp.open(port);
    await oldest.startData('oldest@sender.test', 'someone@example.test');
    await write(oldest, makeMessage(64 * 1024, 'oldest'));
    const older = await RawSmtp.open(port);
    await older.startData('older@sender.test', 'someone@example.test');
    await write(older, makeMessage(64 * 1024, 'older'));
    const younger = await RawSmtp.open(port);
    await younger.startData('younger@sender.test', 'someone@example.test');
    await write(younger, makeMessage(4.5 * 1024 * 1024, 'younger'));
    // The older message now needs 2 MiB more than is free; the younger one stalls.
    await write(older, makeMessage(2 * 1024 * 1024, 'older-rest'));
    older.write('.\r\n');
    assert.match(await older.reply(), /^250 2\.0\.0 queued as /);
    younger.write('.\r\n');
    assert.equal(await younger.reply(), '451 4.3.1 Mail system busy, try again later');
    oldest.write('.\r\n');
    assert.match(await oldest.reply(), /^250 2\.0\.0 queued as /);
    assert.deepEqual(await t.events.from('younger@sender.test'), []);
    for (const client of [oldest, older, younger]) client.close();
  });
});

describe('hostile input: sessions that hold slots without sending mail', () => {
  const t = useEmulator();

  /** Sends `commands` in turn, over and over, until a reply is 421 or `rounds` commands went by. */
  async function keepBusy(client: RawSmtp, commands: string[], rounds: number): Promise<string[]> {
    const replies: string[] = [];
    for (let i = 0; i < rounds; i++) {
      const reply = await client.command(commands[i % commands.length]!);
      replies.push(reply);
      if (reply.startsWith('421') || reply === '') break;
      await delay(50);
    }
    return replies;
  }

  it('closes a session that only idles with 421 4.4.2 once the envelope timeout passes: NOOP, RSET and MAIL do not extend it', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ limits: { envelopeTimeout: '1s', maxIdleCommands: 1000 } }),
    );
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    const replies = await keepBusy(client, ['NOOP', 'RSET', 'MAIL FROM:<idle@sender.test>', 'RSET'], 400);
    assert.equal(replies.at(-1), '421 4.4.2 No mail transaction within 1 s, closing connection');
    assert.equal(await client.reply(), '');
    client.close();
    // A sender that gets on with its mail is not affected.
    assert.match(await deliverOne(listener, 'busy@sender.test'), /^250 /);
    await listener.close();
  });

  it('allows maxIdleCommands commands that make no progress between messages; the next gets 421 4.7.0', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { maxIdleCommands: 20 } }));
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    for (let i = 0; i < 15; i++) assert.match(await client.command(i % 2 ? 'RSET' : 'NOOP'), /^250 /);
    // A message is progress: the count starts again after it.
    assert.match(
      await client.send('chatty@sender.test', ['a@example.test'], makeMessage(300, 'chatty')),
      /^250 /,
    );
    const after: string[] = [];
    for (let i = 0; i < 21; i++)
      after.push(await client.command(['NOOP', 'HELP', 'VRFY x', 'XYZZY'][i % 4]!));
    assert.equal(after.filter((reply) => reply.startsWith('421')).length, 1);
    assert.equal(after.at(-1), '421 4.7.0 Too many commands without sending mail');
    assert.equal(await client.reply(), '');
    client.close();
    await listener.close();
  });

  it('caps commands before AUTH on the submission port (authOptional lifts smtp-server cap), not after it', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ limits: { maxUnauthenticatedCommands: 10 } }),
    );
    const anonymous = await RawSmtp.open(listener.port('submission'));
    const replies = await keepBusy(anonymous, ['EHLO client.test'], 300);
    assert.equal(replies.length, 11);
    assert.equal(replies.at(-1), '421 4.7.0 Too many commands before authentication');
    anonymous.close();
    const user = await RawSmtp.open(listener.port('submission'));
    await user.hello();
    await user.startTls();
    await user.hello({ user: USER, password: PASSWORD });
    for (let i = 0; i < 15; i++) assert.match(await user.command('EHLO client.test'), /^250/);
    assert.match(await user.send('auth@sender.test', ['a@example.test'], makeMessage(300, 'auth')), /^250 /);
    user.close();
    await listener.close();
  });

  it('at the connection limit closes the session idle the longest so a real sender gets in', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({
        limits: {
          maxConnections: 10,
          maxConnectionsPerIp: 50,
          maxConnectionsPerNetwork: 50,
          envelopeTimeout: '4s',
        },
      }),
    );
    const idle: RawSmtp[] = [];
    for (let i = 0; i < 10; i++) {
      const client = await RawSmtp.open(listener.port(i % 2 ? 'mx' : 'submission'));
      await client.hello();
      await client.command('NOOP');
      idle.push(client);
    }
    // Sessions become evictable after a quarter of the envelope timeout without progress.
    await delay(1200);
    assert.match(await sendWithNodemailer(listener, 'real@sender.test'), /^250 2\.0\.0 queued as /);
    assert.equal(await idle[0]!.reply(), '421 4.7.0 Closing an idle session to make room, try again later');
    for (const client of idle.slice(1)) assert.equal(await client.command('NOOP'), '250 2.0.0 OK');
    for (const client of idle) client.close();
    await listener.close();
  });

  it('holds one /24 to maxConnectionsPerNetwork while another network is served', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ limits: { maxConnectionsPerIp: 5, maxConnectionsPerNetwork: 5 } }),
    );
    const flood = await Promise.all(
      Array.from({ length: 8 }, (_, i) => greetingFrom(listener.port('mx'), `127.0.9.${i + 1}`)),
    );
    const greetings = flood.map(({ greeting }) => greeting).sort();
    assert.deepEqual(greetings, [
      ...Array(5).fill('220 mx.mailbridge.test ESMTP mailbridge'),
      ...Array(3).fill('421 4.7.0 Too many connections from your network'),
    ]);
    const other = await greetingFrom(listener.port('mx'), '127.0.10.1');
    assert.equal(other.greeting, '220 mx.mailbridge.test ESMTP mailbridge');
    for (const { socket } of [...flood, other]) socket.destroy();
    await listener.close();
  });

  it('holds one IPv6 /64 to maxConnectionsPerNetwork (client addresses from PROXY v2 headers)', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({
        proxyProtocol: true,
        trustedProxies: ['127.0.0.0/8'],
        limits: { maxConnectionsPerIp: 3, maxConnectionsPerNetwork: 3 },
      }),
    );
    const greet = async (address: string) => {
      const client = await RawSmtp.open(listener.port('mx'), {
        proxyHeader: proxyV2Header({ address, port: 40000 }),
        greeting: false,
      });
      return { client, greeting: await client.reply() };
    };
    const flood = await Promise.all([1, 2, 3, 4, 5].map((host) => greet(`2001:db8:1:0:${host}::1`)));
    assert.deepEqual(flood.map(({ greeting }) => greeting).sort(), [
      ...Array(3).fill('220 mx.mailbridge.test ESMTP mailbridge'),
      ...Array(2).fill('421 4.7.0 Too many connections from your network'),
    ]);
    const other = await greet('2001:db8:2::1');
    assert.equal(other.greeting, '220 mx.mailbridge.test ESMTP mailbridge');
    for (const { client } of [...flood, other]) client.close();
    await listener.close();
  });
});
