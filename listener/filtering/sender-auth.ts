import { PassThrough } from 'node:stream';
import { dkimVerify, dmarc, spf } from 'mailauth';
import { type DmarcFacts, HeaderBlock, type HeaderFacts } from '../../core/filtering/index.ts';
import type { DnsResolver } from '../../core/index.ts';
import { SinkState, type StreamSink } from './sink.ts';

export type { DnsResolver } from '../../core/index.ts';

/** The SPF result of MAIL FROM (RFC 7208 §2.6), or of the HELO name for a bounce. */
export interface SpfFacts {
  readonly result: 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';
  readonly domain: string;
}

function within<T>(work: Promise<T>, ms: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(late), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * SPF for the session at MAIL FROM, with mailauth's `spf()` through the injected resolver. The
 * whole check has `timeoutMs`; past it (or on any error) the result is `temperror` (RFC 7208
 * §4.6.4 bounds the lookups, not the time a name server may take to answer them).
 */
export async function checkSpf(options: {
  readonly mailFrom: string;
  readonly remoteAddress: string;
  readonly helo: string;
  /** Our name, for the Received-SPF comment mailauth builds. */
  readonly hostname: string;
  readonly resolver: DnsResolver;
  readonly timeoutMs: number;
}): Promise<SpfFacts> {
  const domain = (options.mailFrom.split('@').pop() || options.helo).toLowerCase();
  const temperror: SpfFacts = { result: 'temperror', domain };
  const check = spf({
    sender: options.mailFrom,
    ip: options.remoteAddress,
    helo: options.helo,
    mta: options.hostname,
    resolver: options.resolver as never,
    maxElapsedTime: options.timeoutMs,
  }).then(
    (result): SpfFacts => ({
      result: result.status.result as SpfFacts['result'],
      domain: result.domain || domain,
    }),
    () => temperror,
  );
  return within(check, options.timeoutMs, temperror);
}

/** When DMARC has nothing to enforce: no single From domain, no record, or a policy short of reject. */
const NOTHING_TO_ENFORCE = null;

async function evaluate(
  from: HeaderFacts,
  spfFacts: SpfFacts,
  dkimDomains: { domain: string; aligned?: string | false }[],
  resolver: DnsResolver,
): Promise<DmarcFacts | null> {
  // false: no single From domain (RFC 7489 §6.6.1).
  const response =
    (await dmarc({
      headerFrom: [...from.from],
      fromFields: from.fromFields,
      spfDomains: spfFacts.result === 'pass' ? [spfFacts.domain] : [],
      dkimDomains,
      resolver: resolver as never,
    })) || undefined;
  if (response?.policy !== 'reject') return NOTHING_TO_ENFORCE;
  const result = response.status.result as DmarcFacts['result'];
  return { result, policy: 'reject', domain: response.status.header?.from ?? response.domain };
}

/**
 * DMARC (RFC 7489) in the DATA pass, for a route that refuses `p=reject` failures. What it can
 * say, and when:
 * - once the header block has streamed by: nothing to enforce (no single From domain, no record,
 *   a policy short of reject), or `pass` because SPF aligns — settled early, DKIM never hashed;
 * - otherwise DKIM decides, and DKIM covers the whole body: the message also streams through
 *   mailauth's DKIM verifier (body hashes as it goes, nothing held but the header block), and
 *   the final verdict comes at the end of DATA, still before the `250`, within the tee's budget.
 * The result is `null` when there is nothing to enforce; the payload's `auth` is still computed
 * in full by the parse function.
 */
export function startDmarc(options: {
  readonly spf: SpfFacts;
  readonly mailFrom: string;
  readonly resolver: DnsResolver;
  /** Cap on the header block held to find From. @default 131072 */
  readonly maxHeaderBytes?: number;
}): StreamSink<DmarcFacts | null> {
  const state = new SinkState<DmarcFacts | null>();
  const headers = new HeaderBlock(options.maxHeaderBytes);
  const body = new PassThrough();
  body.on('drain', () => state.drain());
  const verified = dkimVerify(body, { resolver: options.resolver as never, sender: options.mailFrom }).catch(
    () => undefined,
  );
  let early: Promise<DmarcFacts | null> | undefined;
  const settle = (value: DmarcFacts | null) => {
    state.settle(value);
    body.destroy();
  };
  const onHeaders = (from: HeaderFacts) => {
    early = evaluate(from, options.spf, [], options.resolver).catch(() => NOTHING_TO_ENFORCE);
    void early.then((facts) => {
      if (facts?.result !== 'fail') settle(facts);
    });
  };
  return {
    write: (chunk) => {
      if (state.settled) return true;
      const from = headers.push(chunk);
      if (from) onHeaders(from);
      return body.write(chunk);
    },
    drained: () => (body.writableNeedDrain ? state.waitForDrain() : Promise.resolve()),
    end: () => {
      if (state.settled) return;
      body.end();
      if (!early) return settle(NOTHING_TO_ENFORCE);
      void Promise.all([early, verified]).then(async ([facts, dkim]) => {
        if (facts?.result !== 'fail' || !dkim) return settle(facts);
        const passed = dkim.results
          .filter((row) => row.status.result === 'pass' && row.signingDomain)
          .map((row) => ({ domain: row.signingDomain!, aligned: row.status.aligned }));
        const from = { from: dkim.headerFrom, fromFields: dkim.fromFields };
        settle(await evaluate(from, options.spf, passed, options.resolver).catch(() => facts));
      });
    },
    abort: (_reason) => settle(NOTHING_TO_ENFORCE),
    get settled() {
      return state.settled;
    },
    result: state.result,
  };
}
