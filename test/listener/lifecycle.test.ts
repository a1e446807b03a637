import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { ConfigError, createLogger, createMetrics } from '../../core/index.ts';
import { generateSelfSigned, loadTlsMaterial } from '../../listener/index.ts';
import { stopListener } from '../../listener/listener.ts';
import {
  dotStuff,
  healthOf,
  makeMessage,
  queuedId,
  RawSmtp,
  startTestListener,
  testConfig,
  useEmulatorDir,
} from './helpers.ts';

function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

async function presentedCertificate(port: number): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
  socket.destroy();
  return fingerprint;
}

describe('listener: health, graceful close and TLS material', () => {
  const t = useEmulatorDir('mailbridge-lifecycle-');

  it('reports ok, then draining on close; an in-flight session finishes its message; new ones are refused', async () => {
    const listener = await startTestListener(t.emulator);
    assert.deepEqual(await healthOf(listener.healthPort), { status: 200, body: { status: 'ok' } });
    const client = await RawSmtp.open(listener.port('mx'));
    await client.startData('inflight@sender.test', 'someone@example.test');
    const body = dotStuff(makeMessage(200_000, 'inflight'));
    client.write(body.subarray(0, 100_000));

    const closing = listener.close();
    assert.deepEqual(await healthOf(listener.healthPort), { status: 503, body: { status: 'draining' } });
    assert.ok(await connectionRefused(listener.port('mx')), 'no new connections while draining');

    client.write(body.subarray(100_000));
    client.write('.\r\n');
    const reply = await client.reply();
    assert.equal((await t.events.get(queuedId(reply))).envelope.mailFrom, 'inflight@sender.test');
    assert.match(await client.command('MAIL FROM:<late@sender.test>'), /^421 /);
    client.close();
    await closing;
  });

  it('stopListener (the SIGTERM path of main.ts): a drain that fails is logged and exits 1, the clients are closed all the same', async () => {
    const logger = createLogger('listener');
    const errors: unknown[][] = [];
    logger.error = (...args: unknown[]) => void errors.push(args);
    const destroyed: string[] = [];
    const clients = ['s3', 'sqs'].map((name) => ({ destroy: () => void destroyed.push(name) }));

    const listener = await startTestListener(t.emulator);
    assert.equal(await stopListener(listener, clients, logger), 0);
    assert.deepEqual(errors, []);
    assert.ok(await connectionRefused(listener.port('mx')));

    const failing = { close: () => Promise.reject(new Error('message log unreachable')) };
    assert.equal(await stopListener(failing, clients, logger), 1);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]![0], 'drain failed');
    assert.match(String((errors[0]![1] as { error: Error }).error), /message log unreachable/);
    assert.deepEqual(destroyed, ['s3', 'sqs', 's3', 'sqs']);
  });

  it('swaps the certificate for new connections with updateTls', async () => {
    const listener = await startTestListener(t.emulator);
    const before = await presentedCertificate(listener.port('implicit-tls'));
    const renewed = await generateSelfSigned('renewed.mailbridge.test');
    listener.updateTls(renewed.key, renewed.cert);
    const afterImplicit = await presentedCertificate(listener.port('implicit-tls'));
    assert.notEqual(afterImplicit, before);
    assert.equal(afterImplicit, new X509Certificate(renewed.cert).fingerprint256);
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    await client.startTls();
    const upgraded = (client.socket as import('node:tls').TLSSocket).getPeerX509Certificate()!;
    assert.equal(upgraded.fingerprint256, afterImplicit, 'STARTTLS uses the new certificate too');
    client.close();
    await listener.close();
  });

  it('publishes EMF metrics: connections, accepted and bytes, rejected by reason, session usage', async () => {
    const disabled = process.env.POWERTOOLS_METRICS_DISABLED;
    process.env.POWERTOOLS_METRICS_DISABLED = 'false';
    const metrics = createMetrics('listener-test');
    if (disabled === undefined) delete process.env.POWERTOOLS_METRICS_DISABLED;
    else process.env.POWERTOOLS_METRICS_DISABLED = disabled;
    const listener = await startTestListener(t.emulator, testConfig(), {
      metrics,
      metricsIntervalMs: 3_600_000,
    });
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    await client.command('MAIL FROM:<metrics@sender.test>');
    await client.command('RCPT TO:<x@elsewhere.test>');
    await client.command('RCPT TO:<nobody@strict.test>');
    await client.command('RSET');
    const reply = await client.send('metrics@sender.test', ['a@example.test'], makeMessage(1000, 'metrics'));
    const { raw } = await t.events.get(queuedId(reply));
    client.close();
    const lines: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await listener.close();
    } finally {
      process.stdout.write = write;
    }
    const emf = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const rejected = Object.fromEntries(
      emf.filter((entry) => 'rejected' in entry).map((entry) => [entry.reason, entry.rejected]),
    );
    assert.deepEqual(rejected, { relay_denied: 1, unknown_recipient: 1 });
    const totals = emf.find((entry) => 'accepted' in entry);
    assert.ok(totals, 'the totals line was published');
    assert.equal(totals.accepted, 1);
    assert.equal(totals.bytes, raw.size);
    assert.equal(totals.connections, 1);
    // One session of the default 1000 at its peak: what autoscaling on held slots reads.
    assert.equal(totals.session_usage, 0.1);
    const definitions = (
      totals._aws as { CloudWatchMetrics: { Metrics: { Name: string; Unit: string }[] }[] }
    ).CloudWatchMetrics[0]!.Metrics;
    assert.deepEqual(
      definitions.find((metric) => metric.Name === 'session_usage'),
      { Name: 'session_usage', Unit: 'Percent' },
    );
    assert.ok((totals._aws as { CloudWatchMetrics: unknown[] }).CloudWatchMetrics.length > 0, 'EMF envelope');
  });

  it('makes a self-signed pair at the first local start and reuses it after', async () => {
    const config = testConfig();
    const first = await loadTlsMaterial(config, { runtime: 'local', dataDir: t.dir });
    const keyFile = join(t.dir, 'tls', 'key.pem');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const second = await loadTlsMaterial(config, { runtime: 'local', dataDir: t.dir });
    assert.equal(String(second.cert), String(first.cert));
    assert.equal(await readFile(keyFile, 'utf8'), String(first.key));
    const names = new X509Certificate(first.cert).subjectAltName ?? '';
    assert.match(names, /DNS:localhost/);
    assert.match(names, /IP Address:127\.0\.0\.1/);
  });

  it('reads the pair from files and from a Secrets Manager JSON secret, naming the field when it is wrong', async () => {
    const pair = await generateSelfSigned('files.test');
    const secret = JSON.stringify({ cert: pair.cert, key: pair.key });
    const fromSecret = await loadTlsMaterial(
      testConfig({ tls: { source: 'secrets-manager', secretId: 'mailbridge/tls' } }),
      {
        runtime: 'aws',
        dataDir: t.dir,
        secretsManager: async (id) => (id === 'mailbridge/tls' ? secret : ''),
      },
    );
    assert.equal(fromSecret.cert, pair.cert);
    await assert.rejects(
      loadTlsMaterial(testConfig({ tls: { source: 'secrets-manager', secretId: 'x' } }), {
        runtime: 'aws',
        dataDir: t.dir,
        secretsManager: async () => '{"cert":"only"}',
      }),
      (error: unknown) => error instanceof ConfigError && /tls\.secretId/.test(error.message),
    );
    await assert.rejects(
      loadTlsMaterial(
        testConfig({ tls: { source: 'files', certFile: join(t.dir, 'nope.pem'), keyFile: 'x' } }),
        {
          runtime: 'local',
          dataDir: t.dir,
        },
      ),
      (error: unknown) => error instanceof ConfigError && /^ {2}- tls: cannot read/m.test(error.message),
    );
  });
});
