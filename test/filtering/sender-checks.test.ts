import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import type { DKIMSignOptions } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { DnsblConfigSchema } from '../../core/filtering/index.ts';
import { createDnsZone } from '../../harness/dns-zone.ts';
import { countingSink } from '../../harness/filtering-messages.ts';
import {
  checkSpf,
  DnsblChecker,
  dnsblQueryName,
  ScanTee,
  startDmarc,
} from '../../listener/filtering/index.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const zone = () =>
  createDnsZone({
    'bank.test': { TXT: [['v=spf1 ip4:192.0.2.0/24 -all']] },
    '_dmarc.bank.test': { TXT: [['v=DMARC1; p=reject']] },
    'sel._domainkey.bank.test': {
      TXT: [[`v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`]],
    },
    'news.test': { TXT: [['v=spf1 ip4:192.0.2.0/24 -all']] },
    '_dmarc.news.test': { TXT: [['v=DMARC1; p=none']] },
  });

const message = (from: string) =>
  [
    `From: ${from}`,
    'To: support@example.test',
    'Subject: Statement',
    'Date: Thu, 03 Dec 2026 10:00:00 +0000',
    'Message-ID: <s1@bank.test>',
    '',
    'Your statement is ready.',
    '',
  ].join('\r\n');

async function signed(text: string): Promise<string> {
  const signature = {
    signingDomain: 'bank.test',
    selector: 'sel',
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  const result = await dkimSign(text, { ...signature, signatureData: [signature] } as DKIMSignOptions);
  return result.signatures + text;
}

const spfOf = (remoteAddress: string, mailFrom = 'alerts@bank.test', resolver = zone().resolve) =>
  checkSpf({
    mailFrom,
    remoteAddress,
    helo: 'mx.sender.test',
    hostname: 'mx.example.test',
    resolver,
    timeoutMs: 1000,
  });

/** Streams the message through a tee with the DMARC sink, as the listener's DATA pass will. */
async function dmarcOf(text: string, remoteAddress: string, resolver = zone().resolve) {
  const spf = await spfOf(remoteAddress, 'alerts@bank.test', resolver);
  const sink = startDmarc({ spf, mailFrom: 'alerts@bank.test', resolver });
  const bytes = Buffer.from(text);
  const chunks = Array.from({ length: Math.ceil(bytes.length / 50) }, (_, i) =>
    bytes.subarray(i * 50, i * 50 + 50),
  );
  const tee = new ScanTee([sink], { stallMs: 1000, budgetMs: 2000 });
  await pipeline(Readable.from(chunks), tee, countingSink());
  await tee.settled();
  return sink.result;
}

describe('SPF at MAIL FROM', () => {
  it('passes an authorized client and fails another, through the injected resolver', async () => {
    assert.deepEqual(await spfOf('192.0.2.10'), { result: 'pass', domain: 'bank.test' });
    assert.deepEqual(await spfOf('203.0.113.5'), { result: 'fail', domain: 'bank.test' });
    assert.deepEqual(await spfOf('203.0.113.5', 'someone@nospf.test'), {
      result: 'none',
      domain: 'nospf.test',
    });
  });

  it('is temperror at the deadline when DNS does not answer', async () => {
    const slow = createDnsZone({}, { delayMs: 5000 });
    const started = performance.now();
    const result = await checkSpf({
      mailFrom: 'a@bank.test',
      remoteAddress: '192.0.2.10',
      helo: 'x',
      hostname: 'mx.example.test',
      resolver: slow.resolve,
      timeoutMs: 200,
    });
    assert.equal(result.result, 'temperror');
    assert.ok(performance.now() - started < 1000);
  });
});

describe('DMARC in the DATA pass', () => {
  it('settles at the header block when SPF aligns: pass, with no DKIM needed', async () => {
    assert.deepEqual(await dmarcOf(message('Bank <alerts@bank.test>'), '192.0.2.10'), {
      result: 'pass',
      policy: 'reject',
      domain: 'bank.test',
    });
  });

  it('fails p=reject when neither SPF nor DKIM aligns', async () => {
    assert.deepEqual(await dmarcOf(message('Bank <alerts@bank.test>'), '203.0.113.5'), {
      result: 'fail',
      policy: 'reject',
      domain: 'bank.test',
    });
  });

  it('passes on an aligned DKIM signature checked over the streamed body although SPF fails (forwarded mail)', async () => {
    const text = await signed(message('Bank <alerts@bank.test>'));
    assert.deepEqual(await dmarcOf(text, '203.0.113.5'), {
      result: 'pass',
      policy: 'reject',
      domain: 'bank.test',
    });
  });

  it('fails when the body was changed after signing', async () => {
    const text = (await signed(message('Bank <alerts@bank.test>'))).replace('is ready', 'IS READY');
    assert.equal((await dmarcOf(text, '203.0.113.5'))?.result, 'fail');
  });

  it('has nothing to enforce below p=reject or without a single From domain', async () => {
    assert.equal(await dmarcOf(message('News <n@news.test>'), '203.0.113.5'), null);
    assert.equal(await dmarcOf(`From: a@bank.test\r\nFrom: b@news.test\r\n\r\nx\r\n`, '203.0.113.5'), null);
  });
});

describe('DNS blocklists', () => {
  const config = DnsblConfigSchema.parse({
    zones: [
      { zone: 'bl.test', weight: 1 },
      { zone: 'weak.test', weight: 0.5 },
    ],
    threshold: 1,
  });
  const listings = () =>
    createDnsZone({
      '7.113.0.203.bl.test': { A: ['127.0.0.2'] },
      '8.113.0.203.weak.test': { A: ['127.0.0.4'] },
      '9.113.0.203.bl.test': { A: ['127.255.255.254'] },
      [`${'1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.a.b.0.8.b.d.0.1.0.0.2'}.bl.test`]: { A: ['127.0.0.2'] },
    });

  it('builds reversed query names for IPv4 and IPv6 nibbles (RFC 5782)', () => {
    assert.equal(dnsblQueryName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(dnsblQueryName('::ffff:192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(
      dnsblQueryName('2001:db8:bad::1', 'bl.test'),
      '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.a.b.0.8.b.d.0.1.0.0.2.bl.test',
    );
  });

  it('adds the weights of the listing zones against the threshold; error codes are not listings', async () => {
    const checker = new DnsblChecker(config, listings().resolve);
    assert.deepEqual(await checker.check('203.0.113.7'), { listed: true, score: 1, zones: ['bl.test'] });
    assert.deepEqual(await checker.check('203.0.113.8'), { listed: false, score: 0.5, zones: ['weak.test'] });
    assert.deepEqual(await checker.check('203.0.113.9'), { listed: false, score: 0, zones: [] });
    assert.deepEqual(await checker.check('2001:db8:bad::1'), { listed: true, score: 1, zones: ['bl.test'] });
  });

  it('caches listings and non-listings for their TTLs, and does not cache a zone that did not answer', async () => {
    let now = 0;
    const dns = listings();
    const checker = new DnsblChecker(config, dns.resolve, { now: () => now });
    await checker.check('203.0.113.7');
    await checker.check('192.0.2.1');
    const queries = dns.calls.length;
    await checker.check('203.0.113.7');
    await checker.check('192.0.2.1');
    assert.equal(dns.calls.length, queries, 'answered from the cache');
    now = 61_000; // past the negative TTL (60 s), within the positive one (300 s)
    await checker.check('203.0.113.7');
    assert.equal(dns.calls.length, queries);
    await checker.check('192.0.2.1');
    assert.equal(dns.calls.length, queries + 2);

    dns.delayMs = 3000;
    const slow = new DnsblChecker({ ...config, timeout: 0.1 }, dns.resolve);
    assert.deepEqual(await slow.check('203.0.113.7'), { listed: false, score: 0, zones: [] });
    dns.delayMs = 0;
    assert.equal((await slow.check('203.0.113.7')).listed, true, 'the partial answer was not cached');
  });
});
