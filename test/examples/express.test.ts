import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../../examples/express/server.ts';
import { checkReceiver, SECRET } from './helpers.ts';

describe('examples/express receiver', () => {
  let server: Server;
  let processed = 0;
  before(async () => {
    server = createApp({ secret: SECRET, onEmail: () => void processed++ }).listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('verifies signatures and processes each webhook-id once', async () => {
    const { port } = server.address() as AddressInfo;
    await checkReceiver(`http://127.0.0.1:${port}/webhooks/mailbridge`, () => processed);
  });

  it('run on a port that is taken, says so and exits 1 instead of "listening"', async () => {
    const { port } = server.address() as AddressInfo;
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, '..', '..', 'examples', 'express', 'server.ts')],
      {
        env: { ...process.env, MAILBRIDGE_SIGNING_SECRET: SECRET, PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 20_000,
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    assert.equal(code, 1, `stdout: ${stdout}`);
    assert.equal(stdout, '');
    assert.match(stderr, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
  });
});
