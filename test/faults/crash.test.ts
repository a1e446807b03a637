import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { noDns } from '../../harness/dns-zone.ts';
import { startFaultProxy } from '../../harness/fault-proxy.ts';
import { startWebhookReceiver } from '../../harness/webhook-receiver.ts';
import {
  delay,
  dotStuff,
  listRawKeys,
  makeMessage,
  processConfig,
  RawSmtp,
  spawnListener,
  useEmulatorDir,
} from '../listener/helpers.ts';

describe('faults: the listener killed with SIGKILL mid-DATA', () => {
  const t = useEmulatorDir('mailbridge-kill-', { tlsFiles: true });

  // The S3 calls a message of this size makes before the end of DATA: none below one part (5 MiB,
  // sent as one PutObject at the end), a multipart upload with parts under way above it.
  for (const [label, size, underWay] of [
    ['a small message', 512 * 1024, []],
    ['a multipart upload under way', 12 * 1024 * 1024, ['S3.CreateMultipartUpload', 'S3.UploadPart']],
  ] as const) {
    it(`${label}: never acknowledged, no event, no object`, async () => {
      // The listener's S3 and SQS calls pass through a proxy that counts them: fauxqs 2.4.1 has no
      // ListMultipartUploads (it answers with an empty object listing), so the proxy is what sees
      // that an upload had started before the kill.
      const proxy = await startFaultProxy(t.emulator.emulator.endpoint);
      const running = await spawnListener(
        { ...t.emulator, env: { ...t.emulator.env, AWS_ENDPOINT_URL: proxy.endpoint } },
        await writeConfigFile(t.dir, processConfig(t.dir), 'config.json'),
      );
      try {
        const keysBefore = await listRawKeys(t.emulator.s3, t.emulator.resources.bucket);
        const sender = `killed-${size}@sender.test`;
        const client = await RawSmtp.open(running.smtpPort);
        await client.hello();
        await client.command(`MAIL FROM:<${sender}>`);
        await client.command('RCPT TO:<someone@example.test>');
        assert.match(await client.command('DATA'), /^354 /);
        const body = dotStuff(makeMessage(size, `killed-${size}`));
        // All but the end of DATA: the listener is streaming it to S3 when it dies.
        await new Promise<void>((resolve) => client.socket.write(body, () => resolve()));
        const deadline = Date.now() + 10_000;
        while (underWay.some((op) => !proxy.calls.get(op)) && Date.now() < deadline) await delay(20);
        await delay(100);
        for (const op of underWay) assert.ok(proxy.calls.get(op), `${op} before the kill`);
        assert.equal(proxy.calls.get('S3.CompleteMultipartUpload'), undefined);
        assert.equal(proxy.calls.get('S3.PutObject'), undefined);
        running.child.kill('SIGKILL');
        assert.equal((await running.exit).signal, 'SIGKILL');
        client.write('.\r\n');
        assert.equal(await client.reply(5000), '', 'the connection closed without any reply');
        client.close();
        assert.deepEqual(await t.events.from(sender), []);
        assert.deepEqual(await listRawKeys(t.emulator.s3, t.emulator.resources.bucket), keysBefore);
      } finally {
        running.child.kill('SIGKILL');
        await proxy.close();
      }
    });
  }
});

describe('faults: the runtime restarted while deliveries are pending', () => {
  it('delivers them after the restart, from the dataDir', async () => {
    const secret = 'whsec_cmVzdGFydC1zZWNyZXQ=';
    const receiver = await startWebhookReceiver({ secret });
    const dir = await mkdtemp(join(tmpdir(), 'mailbridge-restart-'));
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'restart',
          match: ['*@example.test'],
          endpoints: [receiver.url],
          secret: { value: secret },
          retrySchedule: Array.from({ length: 20 }, () => 1),
          timeout: '1s',
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
    });
    const ports = { inbox: 0, health: 0, emulator: 0, api: 0 };
    const options = { configFile, dataDir: join(dir, 'data'), ports, resolver: noDns, pollWaitSeconds: 1 };
    try {
      receiver.down = true;
      const first = await startLocalRuntime(options);
      const queued: string[] = [];
      try {
        const transport = nodemailer.createTransport({
          host: '127.0.0.1',
          port: first.listener.listeners[0]!.port,
          secure: false,
          tls: { rejectUnauthorized: false },
        });
        try {
          for (const n of [1, 2, 3]) {
            const info = await transport.sendMail({
              from: 'restart@sender.test',
              to: `pending${n}@example.test`,
              subject: `pending ${n}`,
              text: `pending ${n}`,
            });
            queued.push(/queued as ([0-9A-Z]{26})/.exec(info.response)![1]!);
          }
        } finally {
          transport.close();
        }
        // Every message was tried (and refused) at least once before the stop.
        const deadline = Date.now() + 20_000;
        while (receiver.tries < 3 && Date.now() < deadline) await delay(50);
        assert.ok(receiver.tries >= 3, `${receiver.tries} tries before the stop`);
      } finally {
        await first.close();
      }
      assert.equal(receiver.unique.size, 0);

      receiver.down = false;
      const second = await startLocalRuntime(options);
      try {
        await receiver.waitForUnique(3, 30_000);
      } finally {
        await second.close();
      }
      const delivered = [...receiver.unique.values()].map((entry) => (entry.payload as { id: string }).id);
      assert.deepEqual(delivered.sort(), queued.sort());
    } finally {
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
