import { createServer, type Server } from 'node:http';

/**
 * `GET /healthz` for the load balancer: 200 `{"status":"ok"}` while serving, 503
 * `{"status":"draining"}` once shutdown began, so the NLB stops sending new connections while
 * open sessions finish. An HTTP check, unlike a TCP probe, opens no SMTP session.
 */
export function createHealthServer(isDraining: () => boolean): Server {
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/healthz' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"status":"not found"}');
      return;
    }
    const draining = isDraining();
    response
      .writeHead(draining ? 503 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      .end(JSON.stringify({ status: draining ? 'draining' : 'ok' }));
  });
  // Health checks come every few seconds; idle keep-alive sockets must not delay shutdown.
  server.keepAliveTimeout = 1000;
  return server;
}
