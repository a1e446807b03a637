import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Webhook } from 'standardwebhooks';
import { ApiClientError, apiClient } from '../core/control/index.ts';
import type { DeliveryOutcome, DeliveryOutcomeSource, RawMessageReader } from './inbox/ports.ts';
import {
  type LogView,
  renderCard,
  renderFailure,
  renderMessagePage,
  renderPage,
  viewOf,
} from './inbox/render.ts';
import { containsWords, type InboxEntry, InboxStore, matches, type StoredEntry } from './inbox/store.ts';

export type { DeliveryOutcome, DeliveryOutcomeSource, RawMessageReader } from './inbox/ports.ts';
export { s3RawReader } from './inbox/ports.ts';
export type { InboxEntry } from './inbox/store.ts';

export interface InboxOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 8025 */
  port?: number;
  /** Signing secrets (`whsec_…`) a webhook may be signed with. */
  secrets: readonly string[];
  /**
   * The current secrets of a route the config does not hold (one made through the API, whose
   * secret the inbox cannot know at start), by the `route.id` of the webhook's body.
   */
  routeSecrets?: (routeId: string) => Promise<readonly string[]>;
  /** Oldest entries (and failed deliveries shown) are dropped beyond this. @default 1000 */
  maxEntries?: number;
  /** Where the entries are kept across restarts (the runtime's data folder). @default memory only */
  dataDir?: string;
  /** Reads a message's raw source for the "Raw" view. @default none: the view answers 404 */
  readRaw?: RawMessageReader;
  /** Deliveries to other endpoints, whose failures the page shows. @default none */
  outcomes?: DeliveryOutcomeSource;
  /**
   * The control plane API (base URL and a key), whose message log gives each message page its
   * timeline. @default none: the page says the API is off
   */
  api?: { readonly url: string; readonly key: string };
}

export interface Inbox {
  /** Base URL, e.g. `http://127.0.0.1:8025`; webhooks go to `${url}/webhooks`. */
  readonly url: string;
  readonly port: number;
  /** Entries kept, oldest first. */
  readonly entries: readonly InboxEntry[];
  /** Webhooks received since the inbox was first started, dropped and cleared ones included. */
  readonly received: number;
  /** Resolves with the entries once `count` webhooks have been received. */
  waitFor(count: number, timeoutMs?: number): Promise<readonly InboxEntry[]>;
  /** Forgets every entry (on disk too) and the failed deliveries shown, as the page's Clear button does. */
  clear(): Promise<void>;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;
const ASSETS = join(import.meta.dirname, 'inbox');
const ASSET_TYPES: Record<string, string> = {
  'inbox.js': 'text/javascript; charset=utf-8',
  'inbox.css': 'text/css; charset=utf-8',
};
// The page runs only its own script file; the message HTML is framed from this origin, sandboxed.
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";
// A message's own HTML: no script, no plugin, no remote load (tracking pixels included), no form;
// its inline images (cid:) come from this inbox.
const messageHtmlCsp = (origin: string) =>
  `sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: ${origin}; font-src data:; base-uri 'none'; form-action 'none'`;
const SSE_KEEPALIVE_MS = 15_000;
// RFC 6838 §4.2 type/subtype, else the download is plain bytes.
const MEDIA_TYPE = /^[\w!#$&^.+-]{1,127}\/[\w!#$&^.+-]{1,127}$/;

function send(
  response: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer = '',
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, {
    'content-type': type,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    ...headers,
  });
  response.end(body);
}

function sendJson(response: ServerResponse, status: number, value: unknown): void {
  send(response, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

const notFound = (response: ServerResponse) =>
  send(response, 404, 'text/plain; charset=utf-8', 'not found\n');

async function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function header(value: string | string[] | undefined): string {
  return typeof value === 'string' ? value : '';
}

/** The `route.id` a webhook body names, if it is a payload at all. */
function routeIdOf(body: Buffer): string | undefined {
  try {
    const id = (JSON.parse(body.toString('utf8')) as { route?: { id?: unknown } }).route?.id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

function contentDisposition(kind: 'attachment' | 'inline', filename: string): string {
  return `${kind}; filename*=UTF-8''${encodeURIComponent(filename.toWellFormed().slice(0, 200))}`;
}

/**
 * The dev inbox: the local webhook endpoint (`POST /webhooks`), which checks each request's
 * Standard Webhooks signature against `secrets` and keeps it (in `dataDir` across restarts); the
 * JSON API (`GET /api/webhooks`, newest last, exactly as received); server-sent events of new
 * webhooks (`GET /api/events`); and the pages: the list at `/` (live, searchable, with the
 * failures of deliveries to other endpoints) and one page per message at `/messages/<n>`, with
 * its timeline from the message log when the API is given.
 */
export async function startInbox(options: InboxOptions): Promise<Inbox> {
  const verifiers = options.secrets.map((secret) => new Webhook(secret));
  const maxEntries = options.maxEntries ?? 1000;
  const store = await InboxStore.open({
    maxEntries,
    ...(options.dataDir ? { folder: join(options.dataDir, 'inbox') } : {}),
  });
  // An open page that sees another value in `hello` after reconnecting reloads: failures are
  // numbered again by each start.
  const started = randomUUID();
  const waiters = new Set<() => void>();
  const streams = new Set<ServerResponse>();
  const failures: { seq: number; outcome: DeliveryOutcome }[] = [];
  let failureSeq = 0;

  function broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const stream of streams) stream.write(frame);
  }

  function addFailure(outcome: DeliveryOutcome): void {
    if (outcome.outcome === 'delivered') return;
    failures.push({ seq: ++failureSeq, outcome });
    if (failures.length > maxEntries) failures.splice(0, failures.length - maxEntries);
    broadcast('failure', { seq: failureSeq });
  }

  async function clear(): Promise<void> {
    await store.clear();
    failures.length = 0;
    broadcast('clear', {});
  }
  const log = options.api ? apiClient({ ...options.api, timeoutMs: 5000 }) : undefined;

  /** The message log's record of a webhook's message; the page shows why when there is none. */
  async function logView(stored: StoredEntry): Promise<LogView> {
    if (!log) return { state: 'off', reason: 'The control plane API is off: no message log to show.' };
    const { id } = viewOf(stored);
    if (!id) return { state: 'unavailable', reason: 'This webhook names no message id.' };
    try {
      return { state: 'found', message: await log.getMessage(id) };
    } catch (error) {
      const reason =
        error instanceof ApiClientError && error.status === 404
          ? `The message log has no message ${id} (past its retention, or from another runtime).`
          : `The message log cannot be read: ${(error as Error).message}`;
      return { state: 'unavailable', reason };
    }
  }
  const unsubscribe = options.outcomes?.subscribe(addFailure);
  for (const outcome of (await options.outcomes?.recent()) ?? []) addFailure(outcome);

  async function verify(body: Buffer, headers: IncomingMessage['headers']): Promise<boolean> {
    const signed = {
      'webhook-id': header(headers['webhook-id']),
      'webhook-timestamp': header(headers['webhook-timestamp']),
      'webhook-signature': header(headers['webhook-signature']),
    };
    const verifies = (verifier: Webhook) => {
      try {
        verifier.verify(body, signed);
        return true;
      } catch {
        return false;
      }
    };
    if (verifiers.some(verifies)) return true;
    const routeId = options.routeSecrets && routeIdOf(body);
    if (!routeId) return false;
    const secrets = await options.routeSecrets!(routeId).catch(() => []);
    return secrets.some((secret) => verifies(new Webhook(secret)));
  }

  async function record(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const bytes = await readBody(request);
    if (!bytes) return send(response, 413, 'text/plain', 'payload too large\n');
    const stored = await store.add({
      receivedAt: new Date().toISOString(),
      headers: request.headers,
      body: bytes.toString('utf8'),
      signatureValid: await verify(bytes, request.headers),
    });
    for (const wake of waiters) wake();
    broadcast('webhook', { seq: stored.seq });
    response.writeHead(204).end();
  }

  function events(request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    // What the page may have missed while it (re)connected: it fetches the entries up to these numbers.
    const hello = { received: store.received, failures: failureSeq, started };
    response.write(`retry: 1000\nevent: hello\ndata: ${JSON.stringify(hello)}\n\n`);
    streams.add(response);
    const keepalive = setInterval(() => response.write(': keep-alive\n\n'), SSE_KEEPALIVE_MS);
    request.once('close', () => {
      clearInterval(keepalive);
      streams.delete(response);
    });
  }

  function attachment(response: ServerResponse, stored: StoredEntry, index: number): void {
    const payload = stored.payload as { message?: { attachments?: unknown[] } } | undefined;
    const item = payload?.message?.attachments?.[index] as
      | { content?: unknown; url?: unknown; filename?: unknown; contentType?: unknown }
      | undefined;
    if (typeof item?.url === 'string' && /^https?:\/\//.test(item.url)) {
      response.writeHead(302, { location: item.url, 'cache-control': 'no-store' }).end();
      return;
    }
    if (typeof item?.content !== 'string') {
      notFound(response);
      return;
    }
    const type =
      typeof item.contentType === 'string' && MEDIA_TYPE.test(item.contentType)
        ? item.contentType
        : 'application/octet-stream';
    const filename = typeof item.filename === 'string' ? item.filename : `attachment-${index}`;
    send(response, 200, type, Buffer.from(item.content, 'base64'), {
      'content-disposition': contentDisposition('attachment', filename),
      // Opened rather than saved, an HTML or SVG attachment still runs nothing.
      'content-security-policy': "sandbox; default-src 'none'",
    });
  }

  async function raw(response: ServerResponse, stored: StoredEntry, download: boolean): Promise<void> {
    // The raw object is named by the message id and when the listener accepted it (the payload's).
    const { id, receivedAt } = (stored.payload ?? {}) as { id?: unknown; receivedAt?: unknown };
    const stream =
      options.readRaw && typeof id === 'string' && typeof receivedAt === 'string'
        ? await options.readRaw({ id, receivedAt })
        : undefined;
    if (!stream)
      return send(response, 404, 'text/plain; charset=utf-8', 'the raw message is not available\n');
    response.writeHead(200, {
      'content-type': download ? 'message/rfc822' : 'text/plain; charset=utf-8',
      'content-disposition': contentDisposition(download ? 'attachment' : 'inline', `${id}.eml`),
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    });
    await pipeline(stream, response);
  }

  function search(query: string): { seqs: number[]; failures: number[] } {
    return {
      seqs: store.entries.filter((stored) => matches(stored, query)).map((stored) => stored.seq),
      failures: failures
        .filter(({ outcome }) => containsWords(JSON.stringify(outcome), query))
        .map(({ seq }) => seq),
    };
  }

  function page(response: ServerResponse): void {
    const cards = [
      ...store.entries.map((stored) => ({ at: stored.entry.receivedAt, html: renderCard(stored) })),
      ...failures.map(({ seq, outcome }) => ({ at: outcome.at, html: renderFailure(seq, outcome) })),
    ];
    const html = renderPage(cards, {
      received: store.received,
      kept: store.entries.length,
      failures: failureSeq,
      started,
    });
    send(response, 200, 'text/html; charset=utf-8', html, { 'content-security-policy': PAGE_CSP });
  }

  /** `/messages/<n>…`, `/fragments/messages/<n>` and `/api/webhooks/<n>`. */
  async function message(
    request: IncomingMessage,
    response: ServerResponse,
    kind: string,
    stored: StoredEntry,
    rest: string,
  ) {
    if (kind === 'api/webhooks' && rest === '') return sendJson(response, 200, stored.entry);
    if (kind === 'fragments/messages' && rest === '')
      return send(response, 200, 'text/html; charset=utf-8', renderCard(stored));
    if (kind !== 'messages') return notFound(response);
    if (rest === '') {
      const html = renderMessagePage(stored, await logView(stored));
      return send(response, 200, 'text/html; charset=utf-8', html, { 'content-security-policy': PAGE_CSP });
    }
    if (rest === '/html') {
      const html = viewOf(stored).html;
      if (html === null) return notFound(response);
      // cid: links (RFC 2392) point at the message's inline parts, served by /cid/<Content-ID>.
      const linked = html.replace(/(["'(])cid:([^"')\s]+)/gi, `$1/messages/${stored.seq}/cid/$2`);
      return send(response, 200, 'text/html; charset=utf-8', linked, {
        'content-security-policy': messageHtmlCsp(`http://${request.headers.host ?? '127.0.0.1'}`),
      });
    }
    const cid = /^\/cid\/(.+)$/.exec(rest)?.[1];
    if (cid !== undefined) {
      const contentId = decodeURIComponent(cid);
      const attachments = viewOf(stored).attachments;
      const found = attachments.find((item) => item.contentId === contentId);
      if (!found) return notFound(response);
      return attachment(response, stored, found.index);
    }
    if (rest === '/raw' || rest === '/raw.eml') return raw(response, stored, rest === '/raw.eml');
    const index = /^\/attachments\/(\d+)$/.exec(rest)?.[1];
    if (index !== undefined) return attachment(response, stored, Number(index));
    return notFound(response);
  }

  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://inbox');
    const path = url.pathname;
    if (path === '/webhooks') {
      if (request.method !== 'POST') return send(response, 405, 'text/plain', 'use POST\n');
      return record(request, response);
    }
    if (path === '/api/webhooks' && request.method === 'DELETE') {
      await clear();
      return sendJson(response, 200, { received: store.received, kept: 0 });
    }
    if (request.method !== 'GET') return send(response, 405, 'text/plain', 'use GET\n');
    if (path === '/') return page(response);
    const asset = /^\/assets\/(inbox\.(?:js|css))$/.exec(path)?.[1];
    if (asset) return send(response, 200, ASSET_TYPES[asset]!, await readFile(join(ASSETS, asset)));
    if (path === '/api/webhooks')
      return sendJson(
        response,
        200,
        store.entries.map((stored) => stored.entry),
      );
    if (path === '/api/webhooks/count')
      return sendJson(response, 200, { received: store.received, kept: store.entries.length });
    if (path === '/api/events') return events(request, response);
    if (path === '/api/search') return sendJson(response, 200, search(url.searchParams.get('q') ?? ''));
    const failure = /^\/fragments\/failures\/(\d+)$/.exec(path);
    if (failure) {
      const seq = Number(failure[1]);
      const found = failures.find((item) => item.seq === seq);
      if (!found) return notFound(response);
      return send(response, 200, 'text/html; charset=utf-8', renderFailure(seq, found.outcome));
    }
    const one = /^\/(api\/webhooks|fragments\/messages|messages)\/(\d+)(\/.*)?$/.exec(path);
    const stored = one ? store.get(Number(one[2])) : undefined;
    if (!one || !stored) return notFound(response);
    return message(request, response, one[1]!, stored, one[3] ?? '');
  }

  const server = createServer((request, response) => {
    route(request, response).catch(() => {
      if (!response.headersSent) send(response, 500, 'text/plain', 'error\n');
      else response.destroy();
    });
  });
  server.listen(options.port ?? 8025, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    port,
    get entries() {
      return store.entries.map((stored) => stored.entry);
    },
    get received() {
      return store.received;
    },
    waitFor(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (store.received < count) return;
          cleanup();
          resolve(store.entries.map((stored) => stored.entry));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`dev inbox: ${store.received} of ${count} webhooks after ${timeoutMs} ms`));
        }, timeoutMs);
        timer.unref();
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    clear,
    async close() {
      unsubscribe?.();
      for (const stream of streams) stream.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
    },
  };
}
