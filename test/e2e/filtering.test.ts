/**
 * Issue 14 end to end: real SMTP clients, the listener with the real rspamd and clamd beside it,
 * a local DNS zone for the blocklist and SPF, parse and deliver, and a real webhook receiver.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createMetrics } from '../../core/index.ts';
import { createDnsZone } from '../../harness/dns-zone.ts';
import { CLEAN, INFECTED, SPAM, sendFrom } from '../../harness/filtering-messages.ts';
import { type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { type RunningScanner, skipUnless, startClamd, startRspamd } from '../../harness/scanners.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { queuedId, RawSmtp } from '../listener/helpers.ts';

const SECRET = 'whsec_ZmlsdGVyaW5nLWUyZS1zZWNyZXQ=';

const DNS = createDnsZone({
  '7.0.0.127.bl.test': { A: ['127.0.0.2'] },
  'bank.test': { TXT: [['v=spf1 ip4:127.0.0.2 -all']] },
});

interface Payload {
  id: string;
  route: { id: string };
  spam: { verdict: string; score: number | null; threshold: number; symbols: { name: string }[] };
  virus: { verdict: string; names: string[] };
  warnings: string[];
}

const send = (port: number, options: { from?: string; to: string; body: string; localAddress?: string }) =>
  sendFrom(port, { ...options, from: options.from ?? 'alice@sender.test', to: [options.to] });

describe('spam, malware and flood defence through the whole pipeline', {
  skip: skipUnless('rspamd') || skipUnless('clamd'),
}, () => {
  let rspamd: RunningScanner;
  let clamd: RunningScanner;
  let receiver: WebhookReceiver;
  let pipeline: Pipeline;
  const metricLines: string[] = [];

  const webhooksFor = (id: string) =>
    receiver.received.map((webhook) => webhook.payload as unknown as Payload).filter((p) => p.id === id);
  const deliveredPayload = async (reply: string, route: string) => {
    const id = queuedId(reply);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const found = webhooksFor(id).find((payload) => payload.route.id === route);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no webhook for ${id} on ${route}`);
  };
  const rawObjects = async () => {
    const listed = await pipeline.emulator.s3.send(
      new ListObjectsV2Command({ Bucket: pipeline.emulator.resources.bucket, Prefix: 'raw/' }),
    );
    return listed.KeyCount ?? 0;
  };

  before(async () => {
    [rspamd, clamd] = await Promise.all([startRspamd(), startClamd()]);
    receiver = await startWebhookReceiver({ secret: SECRET });
    const route = (id: string, match: string, filtering: Record<string, unknown>) => ({
      id,
      match: [match],
      endpoints: [receiver.url],
      secret: { value: SECRET },
      filtering,
    });
    const disabled = process.env.POWERTOOLS_METRICS_DISABLED;
    process.env.POWERTOOLS_METRICS_DISABLED = 'false';
    const listenerMetrics = createMetrics('listener');
    process.env.POWERTOOLS_METRICS_DISABLED = disabled;
    pipeline = await startPipeline({
      routes: [
        route('strict', 'strict@example.test', { spam: { action: 'reject' }, spf: { fail: 'refuse' } }),
        route('held', 'held@example.test', { virus: { action: 'quarantine' } }),
        route('tagged', '*@example.test', {}),
      ],
      limits: { connectionsPerMinute: 10 },
      filtering: {
        scanners: {
          rspamd: { url: `http://127.0.0.1:${rspamd.port}` },
          clamd: { port: clamd.port },
          budget: 3,
        },
        dnsbl: { zones: [{ zone: 'bl.test' }] },
      },
      listenerResolver: DNS.resolve,
      listenerMetrics,
    });
  });

  after(async () => {
    await pipeline?.close();
    await receiver?.close();
    await Promise.all([rspamd?.stop(), clamd?.stop()]);
  });

  it('refuses GTUBE with 550 5.7.1 on a reject route and stores nothing', async () => {
    const before = await rawObjects();
    const result = await send(pipeline.smtpPort, { to: 'strict@example.test', body: SPAM });
    assert.equal(result.code, 550);
    assert.match(result.response!, /^550 5\.7\.1 Message refused as spam \(score \d+/);
    assert.equal(await rawObjects(), before, 'no raw object was stored');
  });

  it('delivers GTUBE on a tag route with spam.verdict "spam" and its score', async () => {
    const result = await send(pipeline.smtpPort, { to: 'someone@example.test', body: SPAM });
    assert.equal(result.code, 250);
    const payload = await deliveredPayload(result.response!, 'tagged');
    assert.equal(payload.spam.verdict, 'spam');
    assert.ok(payload.spam.score! >= payload.spam.threshold);
    assert.ok(payload.spam.symbols.some((symbol) => symbol.name === 'GTUBE'));
    assert.equal(payload.virus.verdict, 'clean');
  });

  it('delivers a clean message as ham and clean', async () => {
    const result = await send(pipeline.smtpPort, { to: 'someone@example.test', body: CLEAN });
    assert.equal(result.code, 250);
    const payload = await deliveredPayload(result.response!, 'tagged');
    assert.deepEqual([payload.spam.verdict, payload.virus.verdict], ['ham', 'clean']);
    assert.deepEqual(
      payload.warnings.filter((warning) => warning.startsWith('scan_')),
      [],
    );
  });

  it('refuses EICAR on a reject route, and quarantines it on a quarantine route: stored, no webhook', async () => {
    const refused = await send(pipeline.smtpPort, { to: 'someone@example.test', body: INFECTED });
    assert.equal(refused.code, 550);
    assert.match(refused.response!, /^550 5\.7\.1 Message refused: malware found \(Eicar-Test-Signature/);
    const held = await send(pipeline.smtpPort, { to: 'held@example.test', body: INFECTED });
    assert.equal(held.code, 250);
    const id = queuedId(held.response!);
    // Parsed and kept for release: its payload is stored, marked infected.
    const key = `payloads/${id}/held.json`;
    const deadline = Date.now() + 30_000;
    let stored: Payload | undefined;
    while (!stored && Date.now() < deadline) {
      try {
        const object = await pipeline.emulator.s3.send(
          new GetObjectCommand({ Bucket: pipeline.emulator.resources.bucket, Key: key }),
        );
        stored = JSON.parse(await object.Body!.transformToString()) as Payload;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    assert.ok(stored, 'the quarantined payload is stored');
    assert.equal(stored.virus.verdict, 'infected');
    assert.match(stored.virus.names[0]!, /^Eicar-Test-Signature/);
    // A later message on the same route arrives; the quarantined one never does.
    const clean = await send(pipeline.smtpPort, { to: 'held@example.test', body: CLEAN });
    await deliveredPayload(clean.response!, 'held');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(webhooksFor(id), []);
  });

  it('refuses SPF fail with 550 5.7.23 where the route says so, and accepts it elsewhere', async () => {
    const body = CLEAN.replace('alice@sender.test', 'alerts@bank.test');
    const refused = await send(pipeline.smtpPort, {
      from: 'alerts@bank.test',
      to: 'strict@example.test',
      body,
      localAddress: '127.0.0.3',
    });
    assert.equal(refused.code, 550);
    assert.match(refused.response!, /^550 5\.7\.23 SPF validation failed for bank\.test/);
    const elsewhere = await send(pipeline.smtpPort, {
      from: 'alerts@bank.test',
      to: 'someone@example.test',
      body,
      localAddress: '127.0.0.3',
    });
    assert.equal(elsewhere.code, 250);
  });

  it('refuses a client listed on the local DNSBL zone with 550 5.7.1 naming it', async () => {
    const listed = await send(pipeline.smtpPort, {
      to: 'someone@example.test',
      body: CLEAN,
      localAddress: '127.0.0.7',
    });
    assert.equal(listed.code, 550);
    assert.match(listed.response!, /^550 5\.7\.1 Client address \[127\.0\.0\.7\] is listed by bl\.test/);
  });

  it('answers 421 4.7.0 to a burst of sessions over the per-minute limit', async () => {
    const greetings: string[] = [];
    for (let i = 0; i < 14; i++) {
      const client = await RawSmtp.open(pipeline.smtpPort, { greeting: false, localAddress: '127.0.0.9' });
      greetings.push(await client.reply());
      client.close();
    }
    assert.equal(greetings.filter((greeting) => greeting.startsWith('220')).length, 10);
    const refused = greetings.filter((greeting) => greeting.startsWith('421'));
    assert.equal(refused.length, 4);
    assert.match(refused[0]!, /^421 4\.7\.0 Too many connections from your address/);
  });

  it('delivers mail tagged "unavailable" once the scanners are killed, and counts it', async () => {
    rspamd.kill();
    clamd.kill();
    const result = await send(pipeline.smtpPort, { to: 'someone@example.test', body: CLEAN });
    assert.equal(result.code, 250);
    const payload = await deliveredPayload(result.response!, 'tagged');
    assert.deepEqual([payload.spam.verdict, payload.virus.verdict], ['unavailable', 'unavailable']);
    assert.ok(payload.warnings.some((warning) => warning.startsWith('scan_unavailable: rspamd error')));
    assert.ok(payload.warnings.some((warning) => warning.startsWith('scan_unavailable: clamd error')));
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      metricLines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await pipeline.stopListener();
    } finally {
      process.stdout.write = write;
    }
    const emf = metricLines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const unavailable = emf.filter((entry) => 'scanner_unavailable' in entry);
    assert.deepEqual(
      unavailable.map((entry) => [entry.scanner, entry.reason, entry.scanner_unavailable]).sort(),
      [
        ['clamd', 'error', 1],
        ['rspamd', 'error', 1],
      ],
    );
    const rejected = Object.fromEntries(
      emf.filter((entry) => 'rejected' in entry).map((entry) => [entry.reason, entry.rejected]),
    );
    assert.deepEqual(
      [rejected.spam, rejected.virus, rejected.spf_fail, rejected.dnsbl_listed, rejected.connection_rate],
      [1, 1, 1, 1, 4],
    );
    assert.equal(emf.find((entry) => 'quarantined' in entry)?.reason, 'virus');
    assert.ok(emf.some((entry) => Array.isArray(entry.scan_ms) || typeof entry.scan_ms === 'number'));
  });
});
