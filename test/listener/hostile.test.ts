import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  makeMessage,
  queuedId,
  RawSmtp,
  readObject,
  splitTraceHeader,
  startTestListener,
  testConfig,
  useListener,
} from './helpers.ts';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A PROXY protocol v2 header as an NLB sends it (haproxy proxy-protocol.txt §2.2). */
function proxyV2(
  family: 'tcp4' | 'tcp6' | 'local',
  source = '',
  sourcePort = 0,
  tlvs = Buffer.alloc(0),
): Buffer {
  if (family === 'local') return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const port = (value: number) => Buffer.from([value >> 8, value & 0xff]);
  const addresses =
    family === 'tcp4'
      ? Buffer.concat([Buffer.from(source.split('.').map(Number)), Buffer.from([198, 51, 100, 1])])
      : Buffer.concat([
          Buffer.from('20010db8000000000000000000000007', 'hex'),
          Buffer.from('20010db8000000000000000000000001', 'hex'),
        ]);
  const body = Buffer.concat([addresses, port(sourcePort), port(25), tlvs]);
  const familyByte = family === 'tcp4' ? 0x11 : 0x21;
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, familyByte]), port(body.length), body]);
}

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
  const t = useListener(() => testConfig({ proxyProtocol: true }));

  async function deliverBehind(preamble: Buffer, sender: string) {
    const client = await RawSmtp.open(t.listener.port('mx'), { preamble, greeting: false });
    assert.match(await client.reply(), /^220 /);
    await client.hello();
    const reply = await client.send(sender, ['someone@example.test'], makeMessage(300, sender));
    client.close();
    return t.events.get(queuedId(reply));
  }

  it('takes the client address from a v2 header (IPv4, with an AWS TLV)', async () => {
    const event = await deliverBehind(proxyV2('tcp4', '203.0.113.7', 40001, AWS_TLV), 'v2-ipv4@sender.test');
    assert.equal(event.envelope.remoteAddress, '203.0.113.7');
    assert.equal(event.envelope.remotePort, 40001);
  });

  it('takes the client address from a v2 header (IPv6)', async () => {
    const event = await deliverBehind(proxyV2('tcp6', '', 40002), 'v2-ipv6@sender.test');
    assert.equal(event.envelope.remoteAddress, '2001:db8::7');
    assert.equal(event.envelope.remotePort, 40002);
  });

  it('accepts a v1 header and a v2 LOCAL header (the balancer itself)', async () => {
    const v1 = await deliverBehind(
      Buffer.from('PROXY TCP4 192.0.2.9 198.51.100.1 40003 25\r\n'),
      'v1@sender.test',
    );
    assert.equal(v1.envelope.remoteAddress, '192.0.2.9');
    const local = await deliverBehind(proxyV2('local'), 'local@sender.test');
    assert.equal(local.envelope.remoteAddress, '127.0.0.1');
  });

  it('refuses a connection without a PROXY header', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'), {
      preamble: Buffer.from('EHLO sneaky.test\r\n'),
      greeting: false,
    });
    assert.equal(await client.reply(), '');
    client.close();
  });
});
