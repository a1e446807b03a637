import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One webhook a receiver verified and answered 2xx. */
export interface ReceivedWebhook {
  readonly webhookId: string;
  readonly headers: IncomingMessage['headers'];
  /** The request body, exactly as received. */
  readonly body: string;
  /** The verified payload. */
  readonly payload: Record<string, unknown>;
}

/** How a failing try fails: an HTTP 500, an answer later than the sender waits, or a reset connection. */
export type ReceiverFailure = '500' | 'timeout' | 'reset';

export interface WebhookReceiverOptions {
  /** Signing secret (`whsec_…`) the webhooks are verified with. */
  readonly secret: string;
  /** Share of tries that fail, 0..1; may be changed later. @default 0 */
  readonly failRate?: number;
  /** How failing tries fail, picked at random. @default all three */
  readonly failures?: readonly ReceiverFailure[];
  /**
   * What is kept of each webhook: by default the body and the whole payload; a long run keeps
   * only what this returns (the body is then dropped).
   */
  readonly summarize?: (payload: Record<string, unknown>) => Record<string, unknown>;
  /** How long a `timeout` try is held before it is answered 200 (too late for the sender). @default 2500 */
  readonly holdMs?: number;
}

/** A real HTTP endpoint that verifies Standard Webhooks signatures, like a customer's receiver. */
export interface WebhookReceiver {
  /** The endpoint to configure on a route. */
  readonly url: string;
  /** Verified webhooks answered 2xx, in arrival order, duplicates (same webhook-id) included. */
  readonly received: readonly ReceivedWebhook[];
  /** The first of each webhook-id: what a receiver that dedupes on webhook-id keeps. */
  readonly unique: ReadonlyMap<string, ReceivedWebhook>;
  /** Every request, whatever became of it. */
  readonly tries: number;
  /** Requests whose signature did not verify (answered 400). */
  readonly invalid: number;
  /** Share of tries that fail from now on. */
  failRate: number;
  /** When true every try gets 503: the endpoint is down. */
  down: boolean;
  /** Resolves once `count` distinct webhook-ids were received; rejects after `timeoutMs`. */
  waitForUnique(count: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a webhook receiver on 127.0.0.1, port 0. */
export async function startWebhookReceiver(options: WebhookReceiverOptions): Promise<WebhookReceiver> {
  const verifier = new Webhook(options.secret);
  const failures = options.failures ?? ['500', 'timeout', 'reset'];
  const holdMs = options.holdMs ?? 2500;
  const received: ReceivedWebhook[] = [];
  const unique = new Map<string, ReceivedWebhook>();
  const waiters = new Set<() => void>();
  const timers = new Set<NodeJS.Timeout>();
  const state = { tries: 0, invalid: 0, failRate: options.failRate ?? 0, down: false };

  const server = createServer(async (req, res) => {
    state.tries++;
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return;
    }
    const body = Buffer.concat(chunks).toString('utf8');
    if (state.down) return void res.writeHead(503).end('down');
    const failure =
      Math.random() < state.failRate ? failures[Math.floor(Math.random() * failures.length)] : undefined;
    if (failure === '500') return void res.writeHead(500).end('injected failure');
    if (failure === 'reset') return void req.socket.destroy();
    let payload: Record<string, unknown>;
    try {
      payload = verifier.verify(body, {
        'webhook-id': String(req.headers['webhook-id']),
        'webhook-timestamp': String(req.headers['webhook-timestamp']),
        'webhook-signature': String(req.headers['webhook-signature']),
      }) as Record<string, unknown>;
    } catch {
      state.invalid++;
      return void res.writeHead(400).end('bad signature');
    }
    const accept = () => {
      const webhookId = String(req.headers['webhook-id']);
      const entry = options.summarize
        ? { webhookId, headers: req.headers, body: '', payload: options.summarize(payload) }
        : { webhookId, headers: req.headers, body, payload };
      received.push(entry);
      if (!unique.has(webhookId)) unique.set(webhookId, entry);
      for (const wake of waiters) wake();
      res.writeHead(200).end('ok');
    };
    if (failure !== 'timeout') return accept();
    // Processed, but answered after the sender gave up: the sender retries with the same webhook-id.
    const timer = setTimeout(() => {
      timers.delete(timer);
      accept();
    }, holdMs);
    timers.add(timer);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    unique,
    get tries() {
      return state.tries;
    },
    get invalid() {
      return state.invalid;
    },
    get failRate() {
      return state.failRate;
    },
    set failRate(rate: number) {
      state.failRate = rate;
    },
    get down() {
      return state.down;
    },
    set down(down: boolean) {
      state.down = down;
    },
    async waitForUnique(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (unique.size < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`only ${unique.size} of ${count} webhooks after ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, Math.min(left, 500));
          waiters.add(wake);
        });
      }
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
