import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One webhook the dev inbox received, as `GET /api/webhooks` returns it (docs/architecture.md, "The local runtime"). */
export interface InboxEntry {
  readonly receivedAt: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The request body, byte for byte, as a string. */
  readonly body: string;
  /** Whether a Standard Webhooks signature verified with one of the inbox's secrets. */
  readonly signatureValid: boolean;
}

export interface InboxOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 8025 */
  port?: number;
  /** Signing secrets (`whsec_…`) a webhook may be signed with. */
  secrets: readonly string[];
  /** Oldest entries are dropped beyond this. @default 1000 */
  maxEntries?: number;
}

export interface Inbox {
  /** Base URL, e.g. `http://127.0.0.1:8025`; webhooks go to `${url}/webhooks`. */
  readonly url: string;
  readonly port: number;
  /** Entries kept, oldest first. */
  readonly entries: readonly InboxEntry[];
  /** Webhooks received since start, including entries dropped since. */
  readonly received: number;
  /** Resolves with the entries once `count` webhooks have been received since start. */
  waitFor(count: number, timeoutMs?: number): Promise<readonly InboxEntry[]>;
  close(): Promise<void>;
}

/** What the page shows of one entry, taken from the payload once, when it arrives. */
interface Summary {
  subject: string;
  from: string;
  to: string;
  route: string;
  webhookId: string;
  attachments: string[];
  auth: string;
}

interface Stored {
  readonly seq: number;
  readonly entry: InboxEntry;
  readonly summary: Summary;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

function field(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

function addresses(value: unknown): string {
  if (!Array.isArray(value)) return '';
  return value
    .map((item) => {
      const name = text(field(item, 'name'));
      const address = text(field(item, 'address'));
      return name ? `${name} <${address}>` : address;
    })
    .join(', ');
}

function summarize(body: string, headers: IncomingMessage['headers']): Summary {
  let payload: unknown;
  try {
    payload = JSON.parse(body);
  } catch {
    payload = undefined;
  }
  const message = field(payload, 'message');
  const attachments = field(message, 'attachments');
  const dkim = field(payload, 'auth', 'dkim');
  const dkimResults = Array.isArray(dkim)
    ? dkim.map((signature) => `${text(field(signature, 'result'))} (${text(field(signature, 'domain'))})`)
    : [];
  return {
    subject: payload === undefined ? '(not JSON)' : text(field(message, 'subject')) || '(no subject)',
    from: addresses(field(message, 'from')),
    to: addresses(field(message, 'to')) || text(field(payload, 'route', 'recipients')),
    route: text(field(payload, 'route', 'id')),
    webhookId: text(headers['webhook-id']),
    attachments: Array.isArray(attachments)
      ? attachments.map(
          (attachment) =>
            `${text(field(attachment, 'filename')) || '(unnamed)'} (${text(field(attachment, 'contentType'))}, ${text(field(attachment, 'size'))} bytes)`,
        )
      : [],
    auth: [
      `spf=${text(field(payload, 'auth', 'spf', 'result')) || '?'}`,
      `dkim=${dkimResults.join(', ') || 'none'}`,
      `dmarc=${text(field(payload, 'auth', 'dmarc', 'result')) || '?'}`,
      `arc=${text(field(payload, 'auth', 'arc', 'result')) || '?'}`,
    ].join(' · '),
  };
}

// Email content is hostile input: everything shown is escaped for element text and quoted attributes.
function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!,
  );
}

function renderEntry({ seq, entry, summary }: Stored): string {
  const row = (label: string, value: string) => `<dt>${label}</dt><dd>${escapeHtml(value)}</dd>`;
  const verdict = entry.signatureValid ? '<span class="ok">valid</span>' : '<span class="bad">INVALID</span>';
  return `<article id="w${seq}">
<h2>${escapeHtml(summary.subject)}</h2>
<dl>${row('From', summary.from)}${row('To', summary.to)}${row('Received', entry.receivedAt)}${row('Route', summary.route)}${row('Webhook id', summary.webhookId)}${row('Attachments', summary.attachments.join('; ') || 'none')}${row('Auth', summary.auth)}<dt>Signature</dt><dd>${verdict}</dd></dl>
<details data-seq="${seq}"><summary>Full JSON</summary><pre></pre><a href="/api/webhooks/${seq}">/api/webhooks/${seq}</a></details>
</article>`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem;color:#222}
article{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:.75rem 0}
h2{font-size:1.1rem;margin:.3rem 0;overflow-wrap:anywhere}dl{display:grid;grid-template-columns:8rem 1fr;margin:0}
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:.5rem}
.ok{color:#070;font-weight:600}.bad{color:#b00;font-weight:600}`;

// Refreshes the list when a new webhook arrives, keeping open <details>; the JSON is set as text.
const SCRIPT = `let list = document.getElementById('list');
async function showJson(details) {
  const pre = details.querySelector('pre');
  if (pre.textContent) return;
  const entry = await (await fetch('/api/webhooks/' + details.dataset.seq)).json();
  let body = entry.body;
  try { body = JSON.parse(body); } catch {}
  pre.textContent = JSON.stringify({ ...entry, body }, null, 2);
}
function wire(root) {
  for (const details of root.querySelectorAll('details')) {
    details.addEventListener('toggle', () => details.open && showJson(details));
  }
}
wire(list);
setInterval(async () => {
  try {
    const { received } = await (await fetch('/api/webhooks/count')).json();
    if (String(received) === list.dataset.received) return;
    const page = new DOMParser().parseFromString(await (await fetch('/')).text(), 'text/html');
    const next = page.getElementById('list');
    for (const open of list.querySelectorAll('details[open]')) {
      next.querySelector('details[data-seq="' + open.dataset.seq + '"]')?.setAttribute('open', '');
    }
    document.getElementById('count').replaceWith(page.getElementById('count'));
    list.replaceWith(next);
    list = next;
    wire(list);
    for (const details of list.querySelectorAll('details[open]')) showJson(details);
  } catch {}
}, 2000);`;

function renderPage(stored: readonly Stored[], received: number, nonce: string): string {
  const items = [...stored].reverse().map(renderEntry).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>mailbridge dev inbox</title><style>${STYLE}</style></head>
<body><h1>mailbridge dev inbox</h1>
<p id="count">${received} webhook(s) received, ${stored.length} kept, newest first · <a href="/api/webhooks">/api/webhooks</a></p>
<main id="list" data-received="${received}">
${items || '<p>Nothing yet. Send a mail to anything@example.test on 127.0.0.1:2525.</p>'}
</main>
<script nonce="${nonce}">${SCRIPT}</script></body></html>`;
}

function send(response: ServerResponse, status: number, type: string, body: string | Buffer = ''): void {
  response.writeHead(status, {
    'content-type': type,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  });
  response.end(body);
}

function sendJson(response: ServerResponse, status: number, value: unknown): void {
  send(response, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

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

/**
 * The dev inbox: the local webhook endpoint (`POST /webhooks`), which checks each request's
 * Standard Webhooks signature against `secrets` and keeps it; the JSON API (`GET /api/webhooks`,
 * newest last); and a self-contained page at `/` listing them newest first.
 */
export async function startInbox(options: InboxOptions): Promise<Inbox> {
  const verifiers = options.secrets.map((secret) => new Webhook(secret));
  const maxEntries = options.maxEntries ?? 1000;
  const stored: Stored[] = [];
  let received = 0;
  const waiters = new Set<() => void>();

  function verify(body: Buffer, headers: IncomingMessage['headers']): boolean {
    const signed = {
      'webhook-id': text(headers['webhook-id']),
      'webhook-timestamp': text(headers['webhook-timestamp']),
      'webhook-signature': text(headers['webhook-signature']),
    };
    return verifiers.some((verifier) => {
      try {
        verifier.verify(body, signed);
        return true;
      } catch {
        return false;
      }
    });
  }

  async function record(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const bytes = await readBody(request);
    if (!bytes) return send(response, 413, 'text/plain', 'payload too large\n');
    const body = bytes.toString('utf8');
    const entry: InboxEntry = {
      receivedAt: new Date().toISOString(),
      headers: request.headers,
      body,
      signatureValid: verify(bytes, request.headers),
    };
    received++;
    stored.push({ seq: received, entry, summary: summarize(body, request.headers) });
    if (stored.length > maxEntries) stored.splice(0, stored.length - maxEntries);
    for (const wake of waiters) wake();
    response.writeHead(204).end();
  }

  function route(request: IncomingMessage, response: ServerResponse): Promise<void> | void {
    const path = new URL(request.url ?? '/', 'http://inbox').pathname;
    if (path === '/webhooks') {
      if (request.method !== 'POST') return send(response, 405, 'text/plain', 'use POST\n');
      return record(request, response);
    }
    if (request.method !== 'GET') return send(response, 405, 'text/plain', 'use GET\n');
    if (path === '/') {
      const nonce = randomBytes(16).toString('base64');
      response.setHeader(
        'content-security-policy',
        `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; connect-src 'self'`,
      );
      return send(response, 200, 'text/html; charset=utf-8', renderPage(stored, received, nonce));
    }
    if (path === '/api/webhooks') {
      return sendJson(
        response,
        200,
        stored.map((item) => item.entry),
      );
    }
    if (path === '/api/webhooks/count') return sendJson(response, 200, { received, kept: stored.length });
    const one = /^\/api\/webhooks\/(\d+)$/.exec(path);
    const item = one && stored.find((candidate) => candidate.seq === Number(one[1]));
    if (item) return sendJson(response, 200, item.entry);
    return send(response, 404, 'text/plain', 'not found\n');
  }

  const server = createServer((request, response) => {
    Promise.resolve(route(request, response)).catch(() => {
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
      return stored.map((item) => item.entry);
    },
    get received() {
      return received;
    },
    waitFor(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (received < count) return;
          cleanup();
          resolve(stored.map((item) => item.entry));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`dev inbox: ${received} of ${count} webhooks after ${timeoutMs} ms`));
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
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
