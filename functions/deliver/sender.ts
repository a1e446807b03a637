import { lookup } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { RequestFilteringHttpAgent, RequestFilteringHttpsAgent } from 'request-filtering-agent';
import type { AttemptResult, Runtime, WebhookSender } from '../../core/index.ts';

/** Options of {@link createHttpSender}. */
export interface HttpSenderOptions {
  /** `aws`: https only, public unicast addresses only. `local`: loopback also allowed, over http too. */
  readonly runtime: Runtime;
  /** Resolves host names; the guard checks every address it returns. @default dns.lookup */
  readonly lookup?: LookupFunction;
  /** Response body bytes read at most; the rest is dropped with the connection. @default 65536 */
  readonly maxResponseBytes?: number;
}

// Exact addresses: the agent matches CIDRs of both families against every address and warns on
// each mismatch. Other 127/8 addresses stay refused, which local development does not miss.
const LOOPBACK = ['127.0.0.1', '::1'];
// request-filtering-agent reports a refused address with a plain Error of this shape (pinned 3.2.1).
const REFUSED = /^DNS lookup .* is not allowed\./;

class TryTimeoutError extends Error {
  override name = 'TryTimeoutError';
}

/**
 * `lookup` answering on a later tick. A lookup that answers at once makes Node connect inside
 * tls.connect(), and a connect that fails at once (ENETUNREACH: no route, as for IPv6 in Lambda)
 * destroys the socket before tls.connect() sets the server name: a TypeError thrown out of the
 * request, and the socket's error emitted later with nobody listening (an uncaught exception).
 */
function deferred(lookup: LookupFunction): LookupFunction {
  return (hostname, options, callback) =>
    lookup(hostname, options, (...answer: unknown[]) =>
      setImmediate(() => (callback as (...args: unknown[]) => void)(...answer)),
    );
}

/**
 * The webhook sender over node:http(s) with the SSRF guard of request-filtering-agent, which checks
 * the address actually connected to: an IP literal before connecting, a host name on each address
 * its lookup returns, so DNS rebinding cannot get past it. Only public unicast addresses are
 * allowed (no private, loopback, link-local, CGNAT, multicast, unique-local, IPv4-mapped or
 * metadata address); a `local` runtime also allows loopback (127.0.0.1 and ::1) and plain http.
 * Redirects are never followed, the response is read once and capped, and the whole try is bounded
 * by the request's timeout. Connections are not kept alive, so each try checks its address anew.
 */
export function createHttpSender(options: HttpSenderOptions): WebhookSender {
  const local = options.runtime === 'local';
  const maxResponseBytes = options.maxResponseBytes ?? 65536;
  const guard = {
    keepAlive: false,
    lookup: deferred(options.lookup ?? lookup),
    allowIPAddressList: local ? LOOPBACK : [],
  };
  const httpsAgent = new RequestFilteringHttpsAgent(guard);
  // Plain http carries the body and signature in clear text: local runs only, where the config
  // has already limited it to loopback hosts.
  const httpAgent = local ? new RequestFilteringHttpAgent(guard) : undefined;

  return (request) =>
    new Promise<AttemptResult>((resolve) => {
      let url: URL;
      try {
        url = new URL(request.url);
      } catch {
        resolve({ kind: 'blocked', error: `not a URL: ${request.url}` });
        return;
      }
      const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
      const agent = url.protocol === 'https:' ? httpsAgent : httpAgent;
      if (!transport || !agent) {
        resolve({
          kind: 'blocked',
          error: `scheme ${url.protocol} not allowed in the ${options.runtime} runtime`,
        });
        return;
      }
      let req: http.ClientRequest;
      try {
        req = transport.request(url, {
          method: 'POST',
          agent,
          headers: { ...request.headers, 'content-length': String(request.body.byteLength) },
        });
      } catch (error) {
        // Whatever fails before a request exists is still a failure to reach the endpoint.
        const { code, name, message } = error as NodeJS.ErrnoException;
        resolve({ kind: 'network', error: `${code ?? name}: ${message}` });
        return;
      }
      let settled = false;
      let response: { status: number; retryAfter?: string; location?: string } | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      const timer = setTimeout(() => {
        // A status already received is the answer; a slow body does not turn it into a timeout.
        if (response) settleResponse();
        else req.destroy(new TryTimeoutError(`no response within ${request.timeoutMs} ms`));
      }, request.timeoutMs);
      function settle(result: AttemptResult) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
        req.destroy();
      }
      function settleResponse() {
        settle({ kind: 'response', ...response!, body: Buffer.concat(chunks).toString('utf8') });
      }
      req.on('response', (res) => {
        const retryAfter = res.headers['retry-after'];
        const location = res.headers.location;
        response = {
          status: res.statusCode ?? 0,
          ...(retryAfter ? { retryAfter } : {}),
          ...(location ? { location } : {}),
        };
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk.subarray(0, maxResponseBytes - received));
          received += chunk.length;
          if (received >= maxResponseBytes) settleResponse();
        });
        res.on('end', settleResponse);
        res.on('error', settleResponse);
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (response) settleResponse();
        else if (error instanceof TryTimeoutError) settle({ kind: 'timeout', error: error.message });
        else if (REFUSED.test(error.message))
          settle({ kind: 'blocked', error: `refused address: ${error.message}` });
        else settle({ kind: 'network', error: `${error.code ?? error.name}: ${error.message}` });
      });
      req.end(request.body);
    });
}
