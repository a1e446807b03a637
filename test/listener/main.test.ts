import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { startTestEmulator, type TestEmulator } from '../helpers/emulator.ts';
import {
  delay,
  dotStuff,
  EventCollector,
  listRawKeys,
  makeMessage,
  queuedId,
  RawSmtp,
  testTls,
} from './helpers.ts';

type Running = { child: ChildProcess; smtpPort: number; healthPort: number; exit: Promise<number | null> };

describe('listener/main.ts as a process', () => {
  let emulator: TestEmulator;
  let events: EventCollector;
  let dir: string;

  before(async () => {
    emulator = await startTestEmulator();
    events = new EventCollector(emulator.sqs, emulator.resources.inboundQueueUrl);
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-main-'));
    const tls = await testTls();
    await writeFile(join(dir, 'key.pem'), tls.key);
    await writeFile(join(dir, 'cert.pem'), tls.cert);
  });

  after(async () => {
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function writeConfig(name: string, document: Record<string, unknown>): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, JSON.stringify(document));
    return path;
  }

  const config = (closeTimeout: string) => ({
    hostname: 'mx.mailbridge.test',
    domains: ['example.test'],
    routes: [
      {
        id: 'all',
        match: ['*@example.test'],
        endpoints: ['http://127.0.0.1:1/'],
        secret: { value: 'whsec_eA==' },
      },
    ],
    listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
    health: { host: '127.0.0.1', port: 0 },
    tls: { source: 'files', certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') },
    limits: { closeTimeout },
  });

  /** Spawns `node listener/main.ts` (node itself, so signals reach it) and reads its bound ports. */
  async function spawnListener(configPath: string): Promise<Running> {
    const child = spawn(process.execPath, ['listener/main.ts'], {
      env: {
        ...process.env,
        ...emulator.env,
        MAILBRIDGE_CONFIG: configPath,
        POWERTOOLS_LOG_LEVEL: 'INFO',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exit = once(child, 'exit').then(([code]) => code as number | null);
    let smtpPort = 0;
    let healthPort = 0;
    for await (const line of createInterface({ input: child.stdout! })) {
      const entry = JSON.parse(line) as { message: string; mode?: string; port?: number };
      if (entry.message === 'listening' && entry.mode === 'mx') smtpPort = entry.port!;
      if (entry.message === 'health endpoint') healthPort = entry.port!;
      if (smtpPort && healthPort) break;
    }
    child.stdout!.resume();
    return { child, smtpPort, healthPort, exit };
  }

  async function health(port: number): Promise<number> {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
  }

  async function startData(port: number, sender: string): Promise<RawSmtp> {
    const client = await RawSmtp.open(port);
    await client.hello();
    await client.command(`MAIL FROM:<${sender}>`);
    await client.command('RCPT TO:<someone@example.test>');
    assert.match(await client.command('DATA'), /^354 /);
    return client;
  }

  it('SIGTERM during DATA: the message in flight completes with 250 and its event, then exit 0', async () => {
    const running = await spawnListener(await writeConfig('drain.json', config('20s')));
    assert.equal(await health(running.healthPort), 200);
    const client = await startData(running.smtpPort, 'sigterm-completes@sender.test');
    const message = makeMessage(3 * 1024 * 1024, 'sigterm');
    const stuffed = dotStuff(message);
    client.write(stuffed.subarray(0, 1024 * 1024));
    running.child.kill('SIGTERM');
    while ((await health(running.healthPort)) !== 503) await delay(20);
    client.write(stuffed.subarray(1024 * 1024));
    client.write('.\r\n');
    const reply = await client.reply(30_000);
    const event = await events.get(queuedId(reply));
    assert.equal(event.envelope.mailFrom, 'sigterm-completes@sender.test');
    assert.match(await client.command('QUIT'), /^421 |^$/);
    client.close();
    assert.equal(await running.exit, 0);
  });

  it('SIGTERM during DATA: a session still sending at closeTimeout gets 421 and nothing is stored, exit 0', async () => {
    const running = await spawnListener(await writeConfig('cut.json', config('1s')));
    const before = await listRawKeys(emulator.s3, emulator.resources.bucket);
    const client = await startData(running.smtpPort, 'sigterm-cut@sender.test');
    client.write(dotStuff(makeMessage(1024 * 1024, 'cut')));
    running.child.kill('SIGTERM');
    assert.equal(await client.reply(15_000), '421 4.3.2 Server shutting down, try again later');
    client.close();
    assert.equal(await running.exit, 0);
    assert.deepEqual(await events.from('sigterm-cut@sender.test'), []);
    assert.deepEqual(await listRawKeys(emulator.s3, emulator.resources.bucket), before);
  });

  it('exits non-zero on a bad config, naming the field', async () => {
    const path = await writeConfig('bad.json', { ...config('1s'), listeners: [{ port: 25, mode: 'relay' }] });
    const child = spawn(process.execPath, ['listener/main.ts'], {
      env: { ...process.env, ...emulator.env, MAILBRIDGE_CONFIG: path },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.match(stderr, /listeners\[0\]\.mode/);
  });
});
