import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type LookupFunction, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { AttemptResult, WebhookRequest } from '../../core/index.ts';
import { createHttpSender } from '../../functions/deliver/index.ts';

// Extends test/functions/deliver's SSRF cases: every special-purpose range, IPv6 spellings,
// numeric host forms, DNS rebinding, redirects. A loopback listener counts connections: a refused
// try must never reach it.

const request = (url: string, timeoutMs = 2000): WebhookRequest => ({
  url,
  headers: { 'content-type': 'application/json' },
  body: Buffer.from('{}'),
  timeoutMs,
});

/** A lookup that answers `answers[n]` to the n-th question (the last answer repeats). */
function scriptedLookup(answers: readonly string[], asked: string[]): LookupFunction {
  return (hostname, options, callback) => {
    const address = answers[Math.min(asked.length, answers.length - 1)]!;
    asked.push(hostname);
    const family = address.includes(':') ? 6 : 4;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

const PRIVATE_V4 = [
  '0.0.0.0',
  '0.1.2.3',
  '10.0.0.1',
  '100.64.0.1',
  '127.0.0.1',
  '127.255.255.254',
  '169.254.169.254',
  '172.16.0.1',
  '172.31.255.255',
  '192.0.0.8',
  '192.0.2.1',
  '192.88.99.1',
  '192.168.1.1',
  '198.18.0.1',
  '198.19.255.254',
  '198.51.100.1',
  '203.0.113.1',
  '224.0.0.1',
  '239.255.255.250',
  '240.0.0.1',
  '255.255.255.255',
];

const PRIVATE_V6 = [
  '::',
  '::1',
  '::ffff:10.0.0.1',
  '::ffff:a9fe:a9fe',
  '::ffff:7f00:1',
  '64:ff9b::a9fe:a9fe',
  '64:ff9b::7f00:1',
  '2002:7f00:1::',
  '2001::1',
  '2001:db8::1',
  'fc00::1',
  'fd00:ec2::254',
  'fe80::1',
  'ff02::1',
];

describe('hostile input: webhook SSRF', () => {
  let trap: Server;
  let port: number;
  let connections = 0;

  before(async () => {
    trap = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    port = (trap.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => trap.close(() => resolve())));

  async function expectBlocked(send: (request: WebhookRequest) => Promise<AttemptResult>, url: string) {
    const result = await send(request(url));
    assert.equal(result.kind, 'blocked', `${url}: ${JSON.stringify(result)}`);
  }

  it('refuses every special-purpose IPv4 and IPv6 address, as a literal and as a resolved name, without connecting', async () => {
    const aws = createHttpSender({ runtime: 'aws' });
    for (const address of PRIVATE_V4) await expectBlocked(aws, `https://${address}:${port}/hook`);
    for (const address of PRIVATE_V6) await expectBlocked(aws, `https://[${address}]:${port}/hook`);
    for (const address of [...PRIVATE_V4, ...PRIVATE_V6]) {
      const asked: string[] = [];
      await expectBlocked(
        createHttpSender({ runtime: 'aws', lookup: scriptedLookup([address], asked) }),
        `https://hooks.example.test:${port}/hook`,
      );
      assert.deepEqual(asked, ['hooks.example.test'], address);
    }
    assert.equal(connections, 0);
  });

  it('refuses numeric and IPv6 spellings of loopback and metadata, and zone ids, without connecting', async () => {
    const forms = [
      'http://2130706433',
      'http://0x7f.1',
      'http://0x7f000001',
      'http://0177.0.0.1',
      'http://0177.0000.0000.0001',
      'http://127.1',
      'http://127.0.1',
      'http://0',
      'http://2852039166',
      'http://0xa9.0xfe.0xa9.0xfe',
      'http://[0:0:0:0:0:ffff:7f00:1]',
      'http://[::ffff:127.0.0.1]',
      'http://[::]',
      'http://[fe80::1%25eth0]',
      'http://[::ffff:169.254.169.254]',
    ];
    const aws = createHttpSender({ runtime: 'aws' });
    for (const form of forms) {
      await expectBlocked(aws, `${form}:${port}/hook`);
      await expectBlocked(aws, `${form.replace('http:', 'https:')}:${port}/hook`);
    }
    // Locally loopback is allowed, but only 127.0.0.1 and ::1 as such: no other spelling or range.
    const local = createHttpSender({ runtime: 'local' });
    for (const form of [
      'http://0',
      'http://[::]',
      'http://127.0.0.2',
      'http://[::ffff:127.0.0.1]',
      'http://169.254.169.254',
    ]) {
      await expectBlocked(local, `${form}:${port}/hook`);
    }
    assert.equal(connections, 0);
  });

  it('checks the address it connects to: a name that answers public first and 127.0.0.1 next never reaches loopback', async () => {
    const asked: string[] = [];
    const send = createHttpSender({
      runtime: 'aws',
      lookup: scriptedLookup(['93.184.216.34', '127.0.0.1'], asked),
    });
    const url = `https://rebind.example.test:${port}/hook`;
    // The first try goes to the public address (unreachable here: a network error or a timeout).
    const first = await send(request(url, 1500));
    assert.ok(['network', 'timeout'].includes(first.kind), JSON.stringify(first));
    // Connections are not reused, so the next try resolves again and sees loopback.
    for (let i = 0; i < 3; i++) await expectBlocked(send, url);
    assert.equal(asked.length, 4, 'one lookup per try, checked where it is used');
    // A resolver that mixes public and private answers in one reply is refused too.
    const mixed: LookupFunction = (_hostname, options, callback) => {
      const all = [
        { address: '93.184.216.34', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ];
      if (options.all) callback(null, all);
      else callback(null, '127.0.0.1', 4);
    };
    await expectBlocked(createHttpSender({ runtime: 'aws', lookup: mixed }), url);
    assert.equal(connections, 0);
  });

  it('does not follow redirects, to loopback or metadata: the 3xx is the answer', async () => {
    let redirected = 0;
    const target = createHttpServer((_req, res) => {
      redirected++;
      res.end('reached');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const targetPort = (target.address() as AddressInfo).port;
    const redirector = createHttpServer((req, res) => {
      const status = Number(req.url!.slice(1));
      const location =
        status === 302 ? 'http://169.254.169.254/latest/meta-data/' : `http://127.0.0.1:${targetPort}/x`;
      res.writeHead(status, { location }).end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const redirectorPort = (redirector.address() as AddressInfo).port;
    const local = createHttpSender({ runtime: 'local' });
    for (const status of [301, 302, 303, 307, 308]) {
      const result = await local(request(`http://127.0.0.1:${redirectorPort}/${status}`));
      assert.equal(result.kind, 'response');
      assert.equal(result.kind === 'response' && result.status, status);
    }
    assert.equal(redirected, 0);
    await new Promise<void>((resolve) => redirector.close(() => resolve()));
    await new Promise<void>((resolve) => target.close(() => resolve()));
  });
});
