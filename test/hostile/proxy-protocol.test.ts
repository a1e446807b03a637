import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  makeMessage,
  PASSWORD,
  proxyV2Header,
  queuedId,
  RawSmtp,
  startTestListener,
  testConfig,
  USER,
  useListener,
} from '../listener/helpers.ts';

// PP2_TYPE_AWS (0xEA) with the VPC endpoint id subtype, as an NLB behind PrivateLink adds it.
const AWS_TLV = (() => {
  const value = Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-0123456789abcdef0')]);
  return Buffer.concat([Buffer.from([0xea, value.length >> 8, value.length & 0xff]), value]);
})();

describe('hostile input: PROXY protocol behind the NLB', () => {
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
