import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  makeMessage,
  PASSWORD,
  proxyV2Header,
  queuedId,
  RawSmtp,
  readObject,
  splitTraceHeader,
  startTestListener,
  testConfig,
  USER,
  useListener,
} from './helpers.ts';

// PP2_TYPE_AWS (0xEA) with the VPC endpoint id subtype, as an NLB behind PrivateLink adds it.
const AWS_TLV = (() => {
  const value = Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-0123456789abcdef0')]);
  return Buffer.concat([Buffer.from([0xea, value.length >> 8, value.length & 0xff]), value]);
})();

describe('listener: hostile input', () => {
  const t = useListener();

  it('discards commands pipelined after STARTTLS (no plaintext injection)', async () => {
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

  it('never splits one DATA into two messages on bare-LF end-of-data sequences (SMTP smuggling)', async () => {
    const smuggled = 'MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nForged\r\n';
    const body = Buffer.from(
      'From: <a@sender.test>\r\nSubject: smuggling\r\n\r\nhello\r\n' +
        `x\n.\n${smuggled}` +
        `y\r\n.\n${smuggled}` +
        `z\n.\r\n${smuggled}` +
        `w\r.\r\n${smuggled}` +
        'end\r\n',
      'latin1',
    );
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.startData('smuggler@sender.test', 'victim@example.test');
    client.write(body);
    client.write('.\r\n');
    const reply = await client.reply();
    assert.match(reply, /^250 2\.0\.0 queued as /);
    assert.equal(await client.command('NOOP'), '250 2.0.0 OK', 'no further replies to smuggled commands');
    const [event, ...others] = await t.events.from('smuggler@sender.test');
    assert.equal(others.length, 0);
    assert.equal(event!.id, queuedId(reply));
    assert.equal(event!.bareLf, true);
    assert.deepEqual(await t.events.from('smuggled@evil.test'), []);
    const raw = await readObject(t.emulator.s3, event!.raw.bucket, event!.raw.key);
    assert.equal(raw.toString('latin1').split('MAIL FROM:<smuggled@evil.test>').length - 1, 4);
    client.close();
  });

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

  it('refuses bare LFs with 550 5.6.0 when the config says so, and queues nothing', async () => {
    const strict = await startTestListener(t.emulator, testConfig({ limits: { rejectBareLf: true } }));
    const client = await RawSmtp.open(strict.port('mx'));
    await client.hello();
    const bare = Buffer.from('Subject: bare\r\n\r\nline one\nline two\r\n');
    assert.equal(
      await client.send('barelf@sender.test', ['someone@example.test'], bare),
      '550 5.6.0 Bare LF line endings are not allowed (RFC 5321 section 2.3.8)',
    );
    assert.deepEqual(await t.events.from('barelf@sender.test'), []);
    assert.match(
      await client.send('crlf@sender.test', ['someone@example.test'], makeMessage(300, 'crlf')),
      /^250 /,
    );
    client.close();
    await strict.close();
  });
});

describe('listener: PROXY protocol behind the NLB', () => {
  // The "load balancer" connects from 127.0.0.1; 127.0.0.66 is a client that reached the task directly.
  const NLB = '127.0.0.1';
  const DIRECT = '127.0.0.66';
  let passwordChecks = 0;
  const t = useListener(() =>
    testConfig({ proxyProtocol: true, trustedProxies: [`${NLB}/32`], limits: { maxAuthFailuresPerIp: 5 } }),
  );

  async function deliverBehind(preamble: Buffer, sender: string) {
    const client = await RawSmtp.open(t.listener.port('mx'), { preamble, greeting: false });
    assert.match(await client.reply(), /^220 /);
    await client.hello();
    const reply = await client.send(sender, ['someone@example.test'], makeMessage(300, sender));
    client.close();
    return t.events.get(queuedId(reply));
  }

  it('takes the client address from a v2 header (IPv4, with an AWS TLV)', async () => {
    const event = await deliverBehind(
      proxyV2Header({ address: '203.0.113.7', port: 40001 }, AWS_TLV),
      'v2-ipv4@sender.test',
    );
    assert.equal(event.envelope.remoteAddress, '203.0.113.7');
    assert.equal(event.envelope.remotePort, 40001);
  });

  it('takes the client address from a v2 header (IPv6)', async () => {
    const event = await deliverBehind(
      proxyV2Header({ address: '2001:db8::7', port: 40002 }),
      'v2-ipv6@sender.test',
    );
    assert.equal(event.envelope.remoteAddress, '2001:db8::7');
    assert.equal(event.envelope.remotePort, 40002);
  });

  it('accepts a v2 LOCAL header (the balancer itself) with the connection address', async () => {
    const local = await deliverBehind(proxyV2Header(), 'local@sender.test');
    assert.equal(local.envelope.remoteAddress, NLB);
  });

  it('refuses a v1 header, which an NLB never sends, even from the balancer', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'), {
      preamble: Buffer.from('PROXY TCP4 192.0.2.9 198.51.100.1 40003 25\r\nEHLO v1.test\r\n'),
      greeting: false,
    });
    assert.equal(await client.reply(), '');
    assert.ok(client.closed);
    client.close();
  });

  it('refuses a connection without a PROXY header', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'), {
      preamble: Buffer.from('EHLO sneaky.test\r\n'),
      greeting: false,
    });
    assert.equal(await client.reply(), '');
    client.close();
  });

  it('refuses a direct client that sends its own v2 header: it cannot claim an address', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'), {
      localAddress: DIRECT,
      proxyHeader: proxyV2Header({ address: '192.0.2.55', port: 40004 }),
      greeting: false,
    });
    assert.equal(await client.reply(), '');
    assert.ok(client.closed);
    client.close();
    assert.deepEqual(await t.events.from('spoofed@sender.test'), []);
  });

  it('gives a direct client no AUTH guess however it rotates spoofed addresses; behind the balancer the lockout holds', async () => {
    const listener = await startTestListener(
      t.emulator,
      testConfig({ proxyProtocol: true, trustedProxies: [NLB], limits: { maxAuthFailuresPerIp: 5 } }),
      {
        authUsers: (user, password) => {
          passwordChecks += 1;
          return user === USER && password === PASSWORD;
        },
      },
    );
    const guess = (i: number) => `AUTH PLAIN ${Buffer.from(`\0${USER}\0guess ${i}`).toString('base64')}`;
    const direct: string[] = [];
    for (let i = 0; i < 12; i++) {
      const client = await RawSmtp.open(listener.port('implicit-tls'), {
        tls: true,
        localAddress: DIRECT,
        proxyHeader: proxyV2Header({ address: `198.51.100.${10 + i}`, port: 40100 + i }),
      });
      if (!client.closed) {
        await client.hello();
        direct.push(await client.command(guess(i)));
      }
      client.close();
    }
    assert.deepEqual(direct, [], 'no direct connection reached SMTP');
    assert.equal(passwordChecks, 0);
    // Through the balancer the header names the real client; a header the client adds itself is
    // only a line inside its TLS session, so its failures all count against its real address.
    const replies: string[] = [];
    for (let i = 0; i < 7; i++) {
      const client = await RawSmtp.open(listener.port('implicit-tls'), {
        tls: true,
        proxyHeader: proxyV2Header({ address: '203.0.113.99', port: 40200 + i }),
        greeting: false,
      });
      const greeting = await client.reply();
      if (greeting.startsWith('220')) {
        await client.hello();
        assert.equal(
          await client.command(`PROXY TCP4 198.51.100.${50 + i} 198.51.100.1 40000 465`),
          '500 5.5.2 Error: command not recognized',
        );
        replies.push(await client.command(guess(100 + i)));
      } else replies.push(greeting);
      client.close();
    }
    assert.deepEqual(replies, [
      ...Array(4).fill('535 5.7.8 Authentication credentials invalid'),
      ...Array(3).fill('421 4.7.0 Too many authentication failures, try again later'),
    ]);
    await listener.close();
  });
});
