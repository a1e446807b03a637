import { type ClientRequest, request } from 'node:http';
import type { SpamScan } from '../../core/filtering/index.ts';
import { SinkState, type StreamSink } from './sink.ts';

/** The envelope facts rspamd scores with, sent as request headers (rspamd protocol, `/checkv2`). */
export interface ScanEnvelope {
  readonly mailFrom: string;
  readonly rcptTo: readonly string[];
  readonly remoteAddress: string;
  readonly helo: string;
  /** The client's verified reverse-DNS name; absent when unknown (rspamd then scores RDNS_NONE). */
  readonly hostname?: string;
  /** The SMTP AUTH user, when authenticated. */
  readonly authUser?: string | null;
  /** Our message id, so rspamd's log and ours name the same message. */
  readonly queueId?: string;
}

// HTTP header values are bytes: UTF-8 (an SMTPUTF8 address) goes out as its bytes, and control
// characters from a hostile HELO are dropped rather than failing the request.
const headerValue = (text: string) =>
  Buffer.from(text.replace(/[^\u0020-\u007e\u00a0-\uffff]/g, ''), 'utf8').toString('latin1');

interface CheckV2Reply {
  score?: unknown;
  action?: unknown;
  symbols?: Record<string, { score?: unknown }>;
  error?: unknown;
}

function parseReply(status: number | undefined, body: string): SpamScan {
  let reply: CheckV2Reply;
  try {
    reply = JSON.parse(body) as CheckV2Reply;
  } catch {
    return { status: 'unavailable', reason: 'error', detail: `HTTP ${status}: not JSON` };
  }
  if (status !== 200 || typeof reply.score !== 'number') {
    return {
      status: 'unavailable',
      reason: 'error',
      detail: `HTTP ${status}: ${String(reply.error ?? 'no score')}`,
    };
  }
  const symbols = Object.entries(reply.symbols ?? {}).map(([name, symbol]) => ({
    name,
    score: typeof symbol.score === 'number' ? symbol.score : 0,
  }));
  return { status: 'scanned', score: reply.score, action: String(reply.action ?? ''), symbols };
}

/**
 * A streaming client of rspamd's normal worker: each message is one `POST /checkv2` whose body is
 * sent with chunked encoding as DATA arrives, the envelope in the headers rspamd reads (`From`,
 * one `Rcpt` per recipient, `IP`, `Helo`, `Hostname`, `User`, `Queue-Id`). One connection per
 * message: rspamd closes idle connections on its side, and a kept-alive socket it has just closed
 * fails the next message ("socket hang up", seen at 200 concurrent messages); on localhost a
 * connection costs next to nothing.
 */
export class RspamdClient {
  readonly #url: URL;
  readonly #maxBytes: number;

  constructor(options: { url: string; maxBytes: number }) {
    this.#url = new URL('/checkv2', options.url);
    this.#maxBytes = options.maxBytes;
  }

  /** Opens the request for one message. */
  start(envelope: ScanEnvelope): StreamSink<SpamScan> {
    const state = new SinkState<SpamScan>();
    const headers: Record<string, string | string[]> = {
      From: headerValue(envelope.mailFrom),
      Rcpt: envelope.rcptTo.map(headerValue),
      IP: headerValue(envelope.remoteAddress),
      Helo: headerValue(envelope.helo),
    };
    if (envelope.hostname) headers.Hostname = headerValue(envelope.hostname);
    if (envelope.authUser) headers.User = headerValue(envelope.authUser);
    if (envelope.queueId) headers['Queue-Id'] = headerValue(envelope.queueId);
    let sent = 0;
    const req: ClientRequest = request(this.#url, { method: 'POST', headers, agent: false });
    const abort = (reason: 'timeout' | 'stalled' | 'error' | 'too_large' | 'disabled', detail?: string) => {
      state.settle({ status: 'unavailable', reason, ...(detail ? { detail } : {}) });
      req.destroy();
    };
    req.on('error', (error) => abort('error', error.message));
    req.on('drain', () => state.drain());
    req.on('response', (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('error', (error) => abort('error', error.message));
      response.on('end', () =>
        state.settle(parseReply(response.statusCode, Buffer.concat(parts).toString('utf8'))),
      );
    });
    return {
      write: (chunk) => {
        if (state.settled) return true;
        sent += chunk.length;
        // rspamd holds a message whole: past the cap it is not scanned at all.
        if (sent > this.#maxBytes) {
          abort('too_large', `over ${this.#maxBytes} bytes`);
          return true;
        }
        return req.write(chunk);
      },
      drained: () => (req.writableNeedDrain ? state.waitForDrain() : Promise.resolve()),
      end: () => {
        if (!state.settled) req.end();
      },
      abort,
      get settled() {
        return state.settled;
      },
      result: state.result,
    };
  }
}
