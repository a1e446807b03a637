import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makeMessage, RawSmtp, useListener } from '../listener/helpers.ts';

// Seed check: a loopback capture (tshark, Debian package tshark) of a STARTTLS session holds none
// of the message's bytes, while a plaintext session in the same capture shows its own.
function hasTshark(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v tshark'], { encoding: 'utf8' });
    return true;
  } catch {
    return false;
  }
}

/** Starts tshark on lo for `port`; resolves once it captures, or with why it could not. */
async function startCapture(port: number, file: string) {
  const tshark = spawn('tshark', ['-i', 'lo', '-f', `tcp port ${port}`, '-w', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const capturing = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    tshark.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (/Capturing on/.test(stderr)) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    tshark.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  return {
    capturing,
    stderr: () => stderr.trim(),
    async stop() {
      if (tshark.exitCode !== null) return;
      const exited = once(tshark, 'exit');
      tshark.kill('SIGINT');
      await exited;
    },
  };
}

describe('hostile input: STARTTLS on the wire', {
  skip: hasTshark() ? false : 'tshark not installed (Debian package tshark)',
}, () => {
  const t = useListener();

  it('shows no message bytes in clear after "220 Ready to start TLS"', async (c) => {
    const dir = await mkdtemp(join(tmpdir(), 'mailbridge-capture-'));
    const file = join(dir, 'smtp.pcapng');
    const port = t.listener.port('mx');
    const capture = await startCapture(port, file);
    try {
      if (!capture.capturing) {
        c.skip(`tshark could not capture on lo: ${capture.stderr()}`);
        return;
      }
      const secret = `secret-${randomUUID()}`;
      const visible = `visible-${randomUUID()}`;
      const secure = await RawSmtp.open(port);
      await secure.hello();
      assert.equal(await secure.startTls(), '220 2.0.0 Ready to start TLS');
      await secure.hello();
      const body = Buffer.from(`Subject: ${secret} subject\r\n\r\nbody ${secret} body\r\n`);
      assert.match(await secure.send(`${secret}@sender.test`, ['a@example.test'], body), /^250 /);
      secure.close();
      // The control: the same capture does see a plaintext session's message.
      const plain = await RawSmtp.open(port);
      await plain.hello();
      assert.match(
        await plain.send('plain@sender.test', ['a@example.test'], makeMessage(300, visible)),
        /^250 /,
      );
      plain.close();
      // Let the last segments reach the capture before it stops.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await capture.stop();
      const bytes = await readFile(file);
      assert.ok(bytes.includes('220 2.0.0 Ready to start TLS'), 'the capture holds the STARTTLS exchange');
      assert.ok(bytes.includes(visible), 'the capture holds the plaintext message');
      assert.ok(!bytes.includes(secret), 'no byte of the message sent over STARTTLS is in clear');
    } finally {
      await capture.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
