import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
});
