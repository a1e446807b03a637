import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiRequest, ApiResponse } from '../core/control/index.ts';

/** Largest request body read; API requests are small JSON documents. */
const MAX_BODY_BYTES = 1024 * 1024;

export interface ApiServer {
  /** `http://host:port`; the API is under `/v1`. */
  readonly url: string;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string | null | 'too large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return 'too large';
    chunks.push(chunk as Buffer);
  }
  return size === 0 ? null : Buffer.concat(chunks).toString('utf8');
}

/** Serves the API handler over node:http, as API Gateway does in AWS (local runs and tests). */
export async function startApiServer(
  handle: (request: ApiRequest) => Promise<ApiResponse>,
  options: { host?: string; port?: number } = {},
): Promise<ApiServer> {
  const server = createServer(async (req, res) => {
    res.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://api');
    const body = await readBody(req).catch(() => null);
    if (body === 'too large') {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end(
        JSON.stringify({
          error: { code: 'payload_too_large', message: `body: over ${MAX_BODY_BYTES} bytes` },
        }),
      );
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const response = await handle({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
    });
    res.writeHead(response.status, response.headers);
    res.end(response.body);
  });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
