import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { writeConfigFile } from '../../harness/config-file.ts';
import { until } from '../../harness/wait.ts';
import {
  dotStuff,
  healthOf,
  listRawKeys,
  makeMessage,
  processConfig,
  queuedId,
  RawSmtp,
  spawnListener,
  useEmulatorDir,
} from './helpers.ts';

describe('listener/main.ts as a process', () => {
  const t = useEmulatorDir('mailbridge-main-', { tlsFiles: true });

  const config = (closeTimeout: string) =>
    processConfig(t.dir, { hostname: 'mx.mailbridge.test', limits: { closeTimeout } });

  const health = async (port: number) => (await healthOf(port)).status;

  async function startData(port: number, sender: string): Promise<RawSmtp> {
    const client = await RawSmtp.open(port);
    await client.startData(sender, 'someone@example.test');
    return client;
  }

  it('SIGTERM during DATA: the message in flight completes with 250 and its event, then exit 0', async () => {
    const running = await spawnListener(
      t.emulator,
      await writeConfigFile(t.dir, config('20s'), 'drain.json'),
    );
    assert.equal(await health(running.healthPort), 200);
    const client = await startData(running.smtpPort, 'sigterm-completes@sender.test');
    const message = makeMessage(3 * 1024 * 1024, 'sigterm');
    const stuffed = dotStuff(message);
    client.write(stuffed.subarray(0, 1024 * 1024));
    running.child.kill('SIGTERM');
    await until('health draining', async () => (await health(running.healthPort)) === 503);
    client.write(stuffed.subarray(1024 * 1024));
    client.write('.\r\n');
    const reply = await client.reply(30_000);
    const event = await t.events.get(queuedId(reply));
    assert.equal(event.envelope.mailFrom, 'sigterm-completes@sender.test');
    assert.match(await client.command('QUIT'), /^421 |^$/);
    client.close();
    assert.equal((await running.exit).code, 0);
  });

  it('SIGTERM during DATA: a session still sending at closeTimeout gets 421 and nothing is stored, exit 0', async () => {
    const running = await spawnListener(t.emulator, await writeConfigFile(t.dir, config('1s'), 'cut.json'));
    const before = await listRawKeys(t.emulator.s3, t.emulator.resources.bucket);
    const client = await startData(running.smtpPort, 'sigterm-cut@sender.test');
    client.write(dotStuff(makeMessage(1024 * 1024, 'cut')));
    running.child.kill('SIGTERM');
    assert.equal(await client.reply(15_000), '421 4.3.2 Server shutting down, try again later');
    client.close();
    assert.equal((await running.exit).code, 0);
    assert.deepEqual(await t.events.from('sigterm-cut@sender.test'), []);
    assert.deepEqual(await listRawKeys(t.emulator.s3, t.emulator.resources.bucket), before);
  });

  /** Starts listener/main.ts on `document`; resolves with its exit code and stderr. */
  async function failedStart(document: Record<string, unknown>, name: string) {
    const path = await writeConfigFile(t.dir, document, name);
    const child = spawn(process.execPath, ['listener/main.ts'], {
      env: { ...process.env, ...t.emulator.env, MAILBRIDGE_CONFIG: path },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(child, 'exit');
    return { code, stderr };
  }

  it('exits non-zero on a bad config, naming the field', async () => {
    const { code, stderr } = await failedStart(
      { ...config('1s'), listeners: [{ port: 25, mode: 'relay' }] },
      'bad.json',
    );
    assert.equal(code, 1);
    assert.match(stderr, /listeners\[0\]\.mode/);
  });

  it('refuses at start to read PROXY headers without trusted proxies, or with a range that is not one', async () => {
    const untrusted = await failedStart({ ...config('1s'), proxyProtocol: true }, 'proxy-anyone.json');
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /trustedProxies: proxyProtocol needs the load balancer addresses/);
    const garbled = await failedStart(
      { ...config('1s'), proxyProtocol: true, trustedProxies: ['10.0.0.0/8', '10.0.0.300/24'] },
      'proxy-garbled.json',
    );
    assert.equal(garbled.code, 1);
    assert.match(garbled.stderr, /trustedProxies\[1\]: not an IP address or CIDR range/);
  });
});
