import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEV_DNS_ZONE_FILE, dkimSignMessage } from '../../../dev/auth/dev-dkim.ts';
import {
  type DnsZoneRecords,
  loadDnsZone,
  parseDnsZone,
  zoneFileResolver,
  zoneResolver,
} from '../../../functions/parse/zone-resolver.ts';
import { sqsEvent } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

function message(from: string, body = 'Hello from the dev zone.'): string {
  return [
    `From: Sender <${from}>`,
    'To: support@example.test',
    'Subject: Signed locally',
    'Date: Tue, 16 Jan 2024 10:00:00 +0000',
    `Message-ID: <${Date.now()}.${Math.random()}@example.com>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    body,
    '',
  ].join('\r\n');
}

describe('dev DNS zone: SPF, DKIM and DMARC pass or fail locally', () => {
  let h: ParseHarness;
  let zone: DnsZoneRecords;
  before(async () => {
    h = await startParseHarness();
    zone = await loadDnsZone(DEV_DNS_ZONE_FILE);
  });
  after(() => h.close());

  async function auth(raw: Buffer | string, mailFrom: string, remoteAddress = '127.0.0.1') {
    const event = await h.store(raw, { mailFrom, remoteAddress, helo: 'localhost' });
    assert.deepEqual(await h.handler({ resolver: zoneResolver(zone) })(sqsEvent([event])), {
      batchItemFailures: [],
    });
    const [job] = await h.drainJobs();
    return (await h.payload(job!)).auth;
  }

  it('passes DKIM, SPF and DMARC for mail signed with the dev key from example.com over loopback', async () => {
    const signed = await dkimSignMessage(message('sender@example.com'));
    assert.match(signed.toString(), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example.com;/);
    assert.deepEqual(await auth(signed, 'sender@example.com'), {
      spf: { result: 'pass', domain: 'example.com' },
      dkim: [{ result: 'pass', domain: 'example.com', selector: 'mailbridge-dev' }],
      dmarc: { result: 'pass', policy: 'reject', domain: 'example.com' },
      arc: { result: 'none' },
    });
  });

  it('fails DKIM for a message changed after signing, and DMARC when SPF fails too', async () => {
    const signed = (await dkimSignMessage(message('sender@example.com'))).toString();
    // A signed header changed: the signature fails (a changed body alone is "neutral" in mailauth).
    const changed = signed.replace('Subject: Signed locally', 'Subject: Pay this invoice');
    const result = await auth(changed, 'sender@example.com', '192.0.2.99');
    assert.equal(result.dkim[0]!.result, 'fail');
    assert.equal(result.spf.result, 'fail');
    assert.deepEqual(result.dmarc, { result: 'fail', policy: 'reject', domain: 'example.com' });
  });

  it('fails SPF and DMARC for forged.example, and says none (not temperror) for a domain not in the zone', async () => {
    const forged = await auth(message('ceo@forged.example'), 'ceo@forged.example');
    assert.equal(forged.spf.result, 'fail');
    assert.equal(forged.dmarc.result, 'fail');
    const unknown = await auth(message('someone@elsewhere.test'), 'someone@elsewhere.test');
    assert.equal(unknown.spf.result, 'none');
    assert.equal(unknown.dmarc.result, 'none');
  });

  it('answers as dns.promises.resolve would, and refuses a malformed zone by name', async () => {
    const resolve = zoneResolver(
      parseDnsZone(
        'Long.Example.:\n  TXT: ["' +
          'x'.repeat(300) +
          '"]\n  MX: [{ exchange: mx.long.example, priority: 10 }]\n',
        'z.yaml',
      ),
    );
    assert.deepEqual(await resolve('long.example', 'TXT'), [['x'.repeat(255), 'x'.repeat(45)]]);
    assert.deepEqual(await resolve('LONG.example.', 'MX'), [{ exchange: 'mx.long.example', priority: 10 }]);
    await assert.rejects(resolve('long.example', 'A'), { code: 'ENODATA' });
    await assert.rejects(resolve('other.example', 'TXT'), { code: 'ENOTFOUND' });
    const fallback = zoneResolver({}, { fallback: async () => [['from fallback']] });
    assert.deepEqual(await fallback('other.example', 'TXT'), [['from fallback']]);
    assert.throws(
      () => parseDnsZone('a.example:\n  TXT: "not a list"\n', 'bad.yaml'),
      /^ConfigError: invalid config bad\.yaml:\n {2}- line 2: a\.example TXT: /,
    );
    assert.throws(
      () =>
        parseDnsZone('# a comment\na.example:\n  TXT: ["v=spf1 -all"]\n  SPF: ["v=spf1 -all"]\n', 'bad.yaml'),
      /- line 4: a\.example: Unrecognized key: "SPF" \(record types: TXT, A, AAAA, MX, PTR, CNAME\)$/,
    );
  });

  it('follows edits of the zone file: a record added answers at the next lookup, a broken edit keeps the last good zone and is told once by line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailbridge-zone-'));
    try {
      const file = join(dir, 'zone.yaml');
      await writeFile(file, 'example.test:\n  MX: [{ exchange: mx.example.test, priority: 10 }]\n');
      const errors: string[] = [];
      const resolve = await zoneFileResolver(file, { onError: (error) => errors.push(error.message) });
      await assert.rejects(resolve('_mailbridge.example.test', 'TXT'), { code: 'ENOTFOUND' });

      await writeFile(
        file,
        'example.test:\n  TXT: ["v=spf1 -all"]\n_mailbridge.example.test:\n  TXT: ["proof"]\n',
      );
      assert.deepEqual(await resolve('_mailbridge.example.test', 'TXT'), [['proof']]);

      await writeFile(file, 'example.test:\n  TXT: "v=spf1 -all"\n');
      assert.deepEqual(await resolve('_mailbridge.example.test', 'TXT'), [['proof']]);
      assert.deepEqual(await resolve('example.test', 'TXT'), [['v=spf1 -all']]);
      assert.deepEqual(errors, [
        `invalid config ${file}:\n  - line 2: example.test TXT: Invalid input: expected array, received string`,
      ]);

      await rm(file);
      assert.deepEqual(await resolve('_mailbridge.example.test', 'TXT'), [['proof']]);
      assert.match(errors[1] ?? '', /^invalid config .*zone\.yaml:\n {2}- \(file\): cannot read: ENOENT/);
      await writeFile(file, 'example.test:\n  TXT: ["v=spf1 a -all"]\n');
      assert.deepEqual(await resolve('example.test', 'TXT'), [['v=spf1 a -all']]);
      await assert.rejects(resolve('_mailbridge.example.test', 'TXT'), { code: 'ENOTFOUND' });
      assert.equal(errors.length, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
