import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { DKIMSignOptions } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { authenticateMessage, boundedResolver } from '../../../functions/parse/index.ts';
import { createDnsZone, type ZoneRecords } from '../../../harness/dns-zone.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ZONE: ZoneRecords = {
  'sel1._domainkey.sender.test': {
    TXT: [[`v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`]],
  },
  'sender.test': { TXT: [['v=spf1 ip4:192.0.2.0/24 -all']] },
  '_dmarc.sender.test': { TXT: [['v=DMARC1; p=quarantine; rua=mailto:d@sender.test']] },
};

const MESSAGE = [
  'From: Alice <alice@sender.test>',
  'To: support@example.test',
  'Subject: Signed',
  'Date: Mon, 15 Jan 2024 10:00:00 +0000',
  'Message-ID: <signed-1@sender.test>',
  'Content-Type: text/plain',
  '',
  'This message is signed.',
  '',
].join('\r\n');

async function signed(message: string): Promise<string> {
  const signature = {
    signingDomain: 'sender.test',
    selector: 'sel1',
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  // mailauth's types want the keys at the top level, but the signer only reads `signatureData`.
  const result = await dkimSign(message, { ...signature, signatureData: [signature] } as DKIMSignOptions);
  return result.signatures + message;
}

const sender = {
  ip: '192.0.2.10',
  helo: 'mail.sender.test',
  mailFrom: 'alice@sender.test',
  mta: 'mx.example.test',
};

describe('sender authentication', () => {
  let h: ParseHarness;
  before(async () => {
    h = await startParseHarness(ZONE);
  });
  after(() => h.close());

  it('reports dkim, spf and dmarc pass for a signed message from an allowed address', async () => {
    const event = await h.store(await signed(MESSAGE));
    await h.handler()(sqsEvent([event]));
    const [job] = await h.drainJobs();
    assert.deepEqual((await h.payload(job!)).auth, {
      spf: { result: 'pass', domain: 'sender.test' },
      dkim: [{ result: 'pass', domain: 'sender.test', selector: 'sel1' }],
      dmarc: { result: 'pass', policy: 'quarantine', domain: 'sender.test' },
      arc: { result: 'none' },
    });
    assert.ok(h.zone.calls.includes('TXT sel1._domainkey.sender.test'));
    assert.ok(!h.zone.calls.some((call) => call.includes('_bimi')), 'BIMI is off');
  });

  it('fails DKIM for a tampered header and SPF for an address outside the record', async () => {
    const tampered = (await signed(MESSAGE)).replace('Subject: Signed', 'Subject: Changed');
    const { auth } = await authenticateMessage(
      Readable.from([tampered]),
      { ...sender, ip: '198.51.100.7' },
      createDnsZone(ZONE).resolve,
    );
    assert.deepEqual(auth.dkim, [{ result: 'fail', domain: 'sender.test', selector: 'sel1' }]);
    assert.equal(auth.spf.result, 'fail');
    assert.deepEqual(auth.dmarc, { result: 'fail', policy: 'quarantine', domain: 'sender.test' });
  });

  it('reports an unsigned message with no DKIM rows and no DMARC record as none', async () => {
    const { auth } = await authenticateMessage(
      Readable.from([MESSAGE.replaceAll('sender.test', 'other.test')]),
      { ...sender, mailFrom: 'x@other.test' },
      createDnsZone(ZONE).resolve,
    );
    assert.deepEqual(auth, {
      spf: { result: 'none', domain: 'other.test' },
      dkim: [],
      dmarc: { result: 'none', policy: null, domain: 'other.test' },
      arc: { result: 'none' },
    });
  });

  it('turns a DNS server that does not answer into temperror within the deadline', async () => {
    const slow = createDnsZone(ZONE, { delayMs: 60_000 });
    const started = Date.now();
    const { auth } = await authenticateMessage(
      Readable.from([await signed(MESSAGE)]),
      sender,
      boundedResolver(slow.resolve, { timeoutMs: 100 }),
    );
    assert.ok(Date.now() - started < 10_000, 'bounded, not stuck');
    assert.equal(auth.spf.result, 'temperror');
    assert.equal(auth.dkim[0]!.result, 'temperror');
    assert.equal(auth.dmarc.result, 'temperror');
  });

  it('caches answers, including "no such record", and shares one lookup between callers', async () => {
    const zone = createDnsZone(ZONE);
    const resolve = boundedResolver(zone.resolve);
    await Promise.all([resolve('sender.test', 'TXT'), resolve('SENDER.test', 'TXT')]);
    await assert.rejects(resolve('missing.test', 'TXT'), { code: 'ENOTFOUND' });
    await assert.rejects(resolve('missing.test', 'TXT'), { code: 'ENOTFOUND' });
    assert.deepEqual(zone.calls, ['TXT sender.test', 'TXT missing.test']);
  });
});
