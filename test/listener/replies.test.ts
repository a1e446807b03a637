import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { Router } from '../../core/index.ts';
import {
  delay,
  listRawKeys,
  makeMessage,
  PASSWORD,
  queuedId,
  RawSmtp,
  readObject,
  splitTraceHeader,
  startTestListener,
  testConfig,
  USER,
  useEmulator,
  useListener,
} from './helpers.ts';

const LIMIT = 64 * 1024;
const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('listener: reply codes', () => {
  const t = useListener(() => testConfig({ limits: { maxMessageBytes: LIMIT } }));

  it('advertises SIZE, STARTTLS, 8BITMIME, SMTPUTF8, PIPELINING, ENHANCEDSTATUSCODES on the MX port, no AUTH', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    const ehlo = (await client.hello()).split('\n').map((line) => line.slice(4));
    for (const extension of [
      `SIZE ${LIMIT}`,
      'STARTTLS',
      '8BITMIME',
      'SMTPUTF8',
      'PIPELINING',
      'ENHANCEDSTATUSCODES',
    ]) {
      assert.ok(ehlo.includes(extension), `${extension} missing from ${ehlo.join(', ')}`);
    }
    assert.ok(!ehlo.some((line) => line.startsWith('AUTH')));
    assert.equal(await client.command('AUTH PLAIN AGZvbwBiYXI='), '500 5.5.2 Error: command not recognized');
    await client.startTls();
    const secured = (await client.hello()).split('\n').map((line) => line.slice(4));
    assert.ok(!secured.includes('STARTTLS'), 'STARTTLS is offered only until the upgrade');
    client.close();
  });

  it('answers 250 2.0.0 queued as <id>, and the event is already on the queue', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    const reply = await client.send('ok@sender.test', ['someone@example.test'], makeMessage(500, 'ok'));
    assert.match(reply, /^250 2\.0\.0 queued as [0-9A-Z]{26}$/);
    const event = await t.events.get(queuedId(reply));
    assert.equal(event.envelope.mailFrom, 'ok@sender.test');
    const { header } = splitTraceHeader(await readObject(t.emulator.s3, event.raw.bucket, event.raw.key));
    const date = /; (\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}) \+0000\r\n$/.exec(header)?.[1];
    assert.equal(
      header,
      'Received: from client.test ([127.0.0.1])\r\n' +
        `\tby mx.mailbridge.test (mailbridge) with ESMTP id ${event.id}\r\n` +
        `\tfor <someone@example.test>; ${date} +0000\r\n`,
    );
    assert.ok(Math.abs(Date.parse(`${date} GMT`) - Date.parse(event.receivedAt)) < 1000);
    client.close();
  });

  it('refuses a domain that is not ours with 550 5.7.1 (no open relay)', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    assert.equal(await client.command('MAIL FROM:<a@sender.test>'), '250 2.1.0 Accepted');
    assert.equal(
      await client.command('RCPT TO:<victim@gmail.test>'),
      '550 5.7.1 Relaying denied for <victim@gmail.test>',
    );
    client.close();
  });

  it('refuses an address of our domain that no route takes with 550 5.1.1', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    await client.command('MAIL FROM:<a@sender.test>');
    assert.equal(
      await client.command('RCPT TO:<nobody@strict.test>'),
      '550 5.1.1 Mailbox <nobody@strict.test> does not exist',
    );
    assert.equal(await client.command('RCPT TO:<known@strict.test>'), '250 2.1.5 Accepted');
    client.close();
  });

  it('refuses recipients over the limit with 452 4.5.3', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    await client.command('MAIL FROM:<many@sender.test>');
    for (let i = 0; i < 100; i++) assert.match(await client.command(`RCPT TO:<r${i}@example.test>`), /^250 /);
    assert.equal(
      await client.command('RCPT TO:<r0@example.test>'),
      '250 2.1.5 Accepted',
      'a repeat is no new recipient',
    );
    assert.equal(
      await client.command('RCPT TO:<r100@example.test>'),
      '452 4.5.3 Too many recipients, at most 100 per message',
    );
    client.close();
  });

  it('refuses a declared SIZE= over the limit at MAIL FROM with 552 5.3.4', async () => {
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    assert.equal(
      await client.command(`MAIL FROM:<big@sender.test> SIZE=${LIMIT + 1}`),
      `552 5.3.4 Error: message exceeds fixed maximum message size ${LIMIT}`,
    );
    assert.equal(
      await client.command(`MAIL FROM:<big@sender.test> SIZE=${LIMIT - 1000}`),
      '250 2.1.0 Accepted',
    );
    client.close();
  });

  it('refuses a stream over the limit with 552 5.3.4, stores nothing and keeps serving', async () => {
    const before = await listRawKeys(t.emulator.s3, t.emulator.resources.bucket);
    const client = await RawSmtp.open(t.listener.port('mx'));
    await client.hello();
    const reply = await client.send(
      'oversized@sender.test',
      ['someone@example.test'],
      makeMessage(LIMIT * 3, 'big'),
    );
    assert.equal(reply, `552 5.3.4 Error: message exceeds fixed maximum message size ${LIMIT}`);
    assert.deepEqual(await t.events.from('oversized@sender.test'), []);
    assert.deepEqual(await listRawKeys(t.emulator.s3, t.emulator.resources.bucket), before);
    const next = await client.send('after@sender.test', ['someone@example.test'], makeMessage(1000, 'after'));
    assert.match(next, /^250 2\.0\.0 queued as /);
    client.close();
  });

  it('submission: MAIL before STARTTLS gets 530 5.7.0, then AUTH is required', async () => {
    const client = await RawSmtp.open(t.listener.port('submission'));
    await client.hello();
    assert.equal(
      await client.command('MAIL FROM:<a@sender.test>'),
      '530 5.7.0 Must issue a STARTTLS command first',
    );
    assert.equal(
      await client.command(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`),
      '538 5.7.0 Error: Must issue a STARTTLS command first',
    );
    await client.startTls();
    await client.hello();
    assert.equal(await client.command('MAIL FROM:<a@sender.test>'), '530 5.7.0 Authentication required');
    client.close();
  });

  it('submission: a wrong password is refused with 535 5.7.8 (PLAIN and LOGIN); the right one works', async () => {
    const client = await RawSmtp.open(t.listener.port('submission'));
    await client.hello();
    await client.startTls();
    const ehlo = await client.hello();
    assert.match(ehlo, /^250-AUTH PLAIN LOGIN$/m);
    assert.equal(
      await client.command(`AUTH PLAIN ${b64(`\0${USER}\0wrong`)}`),
      '535 5.7.8 Authentication credentials invalid',
    );
    assert.match(await client.command('AUTH LOGIN'), /^334 /);
    assert.match(await client.command(b64('nobody')), /^334 /);
    assert.equal(await client.command(b64(PASSWORD)), '535 5.7.8 Authentication credentials invalid');
    assert.equal(
      await client.command(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`),
      '235 2.7.0 Authentication successful',
    );
    const reply = await client.send(
      'authed@sender.test',
      ['someone@example.test'],
      makeMessage(800, 'authed'),
    );
    const event = await t.events.get(queuedId(reply));
    assert.equal(event.envelope.authUser, USER);
    client.close();
  });

  it('implicit TLS: AUTH required, no STARTTLS offered, TLS below 1.2 refused and the server keeps serving', async () => {
    const old = tlsConnect({
      host: '127.0.0.1',
      port: t.listener.port('implicit-tls'),
      rejectUnauthorized: false,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
    });
    const outcome = await new Promise<string>((resolve) => {
      old.once('secureConnect', () => resolve('connected'));
      old.once('error', (error) => resolve(error.message));
    });
    old.destroy();
    assert.notEqual(outcome, 'connected');
    const client = await RawSmtp.open(t.listener.port('implicit-tls'), { tls: true });
    const ehlo = await client.hello();
    assert.match(ehlo, /^250-AUTH PLAIN LOGIN$/m);
    assert.doesNotMatch(ehlo, /STARTTLS/);
    assert.equal(await client.command('MAIL FROM:<a@sender.test>'), '530 5.7.0 Authentication required');
    assert.match(String((client.socket as import('node:tls').TLSSocket).getProtocol()), /^TLSv1\.[23]$/);
    client.close();
  });
});

describe('listener: connection and authentication limits', () => {
  const t = useEmulator();

  it('refuses a client over the per-address limit with 421 4.7.0, and admits it again once one closed', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { maxConnectionsPerIp: 2 } }));
    const first = await RawSmtp.open(listener.port('mx'));
    const second = await RawSmtp.open(listener.port('mx'));
    const third = await RawSmtp.open(listener.port('mx'), { greeting: false });
    assert.equal(await third.reply(), '421 4.7.0 Too many connections from your address');
    await third.reply();
    assert.ok(third.closed, 'the refused connection is closed');
    first.close();
    await delay(100);
    const fourth = await RawSmtp.open(listener.port('mx'), { greeting: false });
    assert.match(await fourth.reply(), /^220 mx\.mailbridge\.test ESMTP/);
    for (const client of [second, fourth]) client.close();
    await listener.close();
  });

  it('refuses connections over the global limit with 421 4.7.0 while every session has a message open', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { maxConnections: 1 } }));
    const first = await RawSmtp.open(listener.port('mx'));
    await first.hello();
    assert.match(await first.command('MAIL FROM:<busy@sender.test>'), /^250 /);
    const second = await RawSmtp.open(listener.port('submission'), { greeting: false });
    assert.equal(await second.reply(), '421 4.7.0 Too many connections, try again later');
    first.close();
    second.close();
    await listener.close();
  });

  it('answers 451 4.3.0 when the recipient check itself fails, and keeps serving', async () => {
    class BrokenRouter extends Router {
      override resolve(address: string) {
        if (address.startsWith('broken@')) throw new TypeError('route index not loaded');
        return super.resolve(address);
      }
    }
    const config = testConfig();
    const listener = await startTestListener(t.emulator, config, { router: new BrokenRouter(config) });
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    await client.command('MAIL FROM:<a@sender.test>');
    assert.equal(
      await client.command('RCPT TO:<broken@example.test>'),
      '451 4.3.0 Temporary failure, try again later',
    );
    assert.equal(await client.command('RCPT TO:<known@strict.test>'), '250 2.1.5 Accepted');
    client.close();
    await listener.close();
  });

  it('rate-limits authentication failures per client address with 421 4.7.0 and a disconnect', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { maxAuthFailuresPerIp: 2 } }));
    const client = await RawSmtp.open(listener.port('implicit-tls'), { tls: true });
    await client.hello();
    const wrong = `AUTH PLAIN ${b64(`\0${USER}\0guess`)}`;
    assert.equal(await client.command(wrong), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await client.command(wrong), '421 4.7.0 Too many authentication failures, try again later');
    await client.reply();
    assert.ok(client.closed);
    const again = await RawSmtp.open(listener.port('submission'), { greeting: false });
    assert.equal(await again.reply(), '421 4.7.0 Too many authentication failures, try again later');
    again.close();
    const mx = await RawSmtp.open(listener.port('mx'));
    await mx.hello();
    assert.match(await mx.send('mx@sender.test', ['a@example.test'], makeMessage(300, 'mx')), /^250 /);
    mx.close();
    await listener.close();
  });

  it('closes an idle session after the configured socket timeout with 421', async () => {
    const listener = await startTestListener(t.emulator, testConfig({ limits: { socketTimeout: '1s' } }));
    const client = await RawSmtp.open(listener.port('mx'));
    await client.hello();
    assert.match(await client.reply(5000), /^421 4\.4\.2 Timeout - closing connection$/);
    client.close();
    await listener.close();
  });
});
