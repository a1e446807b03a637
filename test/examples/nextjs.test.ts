import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { signWebhook } from '../../core/index.ts';
import { mailbridgeHandler } from '../../examples/nextjs/lib/mailbridge.ts';
import { checkReceiver, SECRET } from './helpers.ts';

/** Serves a fetch-style route handler over node:http, as Next.js does. */
async function serve(
  handler: (request: Request) => Promise<Response>,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers))
        if (typeof value === 'string') headers.set(name, value);
      const response = await handler(
        new Request(`http://127.0.0.1${req.url}`, {
          method: req.method,
          headers,
          body: Buffer.concat(chunks),
        }),
      );
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/mailbridge` };
}

describe('examples/nextjs route handler', () => {
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) {
      server.closeAllConnections();
      server.close();
    }
  });

  it('verifies signatures and processes each webhook-id once', async () => {
    let processed = 0;
    const { server, url } = await serve(
      mailbridgeHandler({ secret: SECRET, onEmail: () => void processed++ }),
    );
    servers.push(server);
    await checkReceiver(url, () => processed);
  });

  it('app/api/mailbridge/route.ts takes its secret from MAILBRIDGE_SIGNING_SECRET', async (t) => {
    process.env.MAILBRIDGE_SIGNING_SECRET = SECRET;
    t.mock.method(console, 'log', () => {});
    const { POST } = await import('../../examples/nextjs/app/api/mailbridge/route.ts');
    const { server, url } = await serve(POST);
    servers.push(server);
    const body = JSON.stringify({ type: 'email.received', version: 1, message: { subject: 'route' } });
    const headers = signWebhook('msg_route', Math.floor(Date.now() / 1000), body, [SECRET]);
    const response = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...headers },
    });
    assert.equal(response.status, 204);
  });
});
