/**
 * RCPT decision: the control plane's RcptIndex holding 100,000 API routes and 10,000 API domains
 * against the config-file Router with the stock config (dev/mailbridge.yaml), measured in the same
 * process, alternating blocks so both see the same machine. Also the Router over the same 100,000
 * routes (why an index), the time to apply one change, and the heap the index and its routes take. Run in its own
 * process with --expose-gc (bench/main.ts does); `node --expose-gc bench/rcpt.ts` prints it alone.
 */
import { readFileSync } from 'node:fs';
import type { SMTPServerSession } from 'smtp-server';
import { RcptIndex, RouteSync, type StoredDomain, type StoredRoute } from '../core/control/index.ts';
import { parseConfig, parseConfigText, type RecipientRoute, type Route, Router } from '../core/index.ts';
import { LISTENER_V8_FLAGS } from '../infra/listener-image.ts';
import { SessionFilter } from '../listener/filtering/index.ts';
import { generateSelfSigned, startListener, storageClients } from '../listener/index.ts';
import { serve, Worker } from './ipc.ts';
import { SmtpSession } from './smtp-client.ts';
import { percentile } from './stats.ts';

export interface RcptResult {
  routes: number;
  domains: number;
  lookups: number;
  router: { p50Ns: number; p99Ns: number };
  index: { p50Ns: number; p99Ns: number };
  p99Ratio: number;
  p50Ratio: number;
  routerAtScale: { p50Ns: number; p99Ns: number; lookups: number };
  change: { putRouteP50Ns: number; putRouteP99Ns: number; removeRouteP50Ns: number; putDomainP50Ns: number };
  indexHeapMiB: number;
  buildMs: number;
  /** What the listener's sender policy keeps after accepting mail for each of the routes. */
  senderPolicyHeapMiB: number;
}

/** A full reload by route sync (what each task does every 10 minutes): its time, and the longest it held the thread. */
export interface RcptReload {
  ms: number;
  longestHoldMs: number;
  /** The process's peak RSS: the first load, then a reload of the index in place. */
  peakRssMiB: number;
}

/** RCPT as a client sees it: the round trip of `RCPT TO` to a listener deciding with each resolver. */
export interface RcptSmtpResult {
  rounds: number;
  router: { p50Us: number; p99Us: number };
  index: { p50Us: number; p99Us: number };
  p99Ratio: number;
  /** p50 of the decision alone inside those round trips, with the caches as the SMTP work leaves them. */
  decisionNs: { router: number; index: Record<RecipientKind, number> };
}

const RECIPIENT_KINDS = ['exact', 'tagged', 'glob', 'catch-all'] as const;
type RecipientKind = (typeof RECIPIENT_KINDS)[number];

const stock = parseConfigText(readFileSync(new URL('../dev/mailbridge.yaml', import.meta.url), 'utf8'), {
  source: 'dev/mailbridge.yaml',
  runtime: 'local',
});
const template = stock.routes[0]!;

/**
 * 100,000 routes over 10,000 tenant domains: per domain 8 exact addresses, 1 glob, 1 catch-all.
 * Each has its own copy of its filtering policy, as routes read from the store do.
 */
function tenantRoutes(domains: number): Route[] {
  return Array.from({ length: domains * ROUTES_PER_DOMAIN }, (_, i) => tenantRoute(i));
}

const ROUTES_PER_DOMAIN = 10;

const tenantDomain = (d: number) => `tenant${d}.example`;

/** When API route `i` was made: one after the other, so ties go by order. */
const createdAt = (i: number) => `2026-01-01T00:00:00.000Z${String(i).padStart(6, '0')}`;

/** Route `i` of {@link tenantRoutes}, made afresh. */
function tenantRoute(i: number): Route {
  const domain = tenantDomain(Math.floor(i / ROUTES_PER_DOMAIN));
  const u = i % ROUTES_PER_DOMAIN;
  const [id, pattern] =
    u < 8
      ? [`${u}`, `user${u}@${domain}`]
      : u === 8
        ? ['glob', `support-*@${domain}`]
        : ['all', `*@${domain}`];
  return {
    ...template,
    id: `r${Math.floor(i / ROUTES_PER_DOMAIN)}-${id}`,
    match: [pattern],
    filtering: structuredClone(template.filtering),
  };
}

const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** Times `resolve` once. */
function once(resolve: (recipient: string) => unknown, recipient: string): number {
  const start = process.hrtime.bigint();
  resolve(recipient);
  return Number(process.hrtime.bigint() - start);
}

/** The index holding the config's routes plus the API routes and domains of {@link tenantRoutes}. */
function tenantIndex(routes: readonly Route[], domainCount: number): RcptIndex {
  const index = new RcptIndex(stock);
  routes.forEach((route, i) => {
    index.putRoute(route, createdAt(i));
  });
  for (let d = 0; d < domainCount; d++) index.putDomain(tenantDomain(d), 'verified');
  return index;
}

// Every recipient is accepted, as most RCPTs are; both sides parse and lowercase the address.
const routerRecipients = Array.from({ length: 1000 }, (_, i) =>
  i % 2 ? `user${i}+tag${i}@localhost` : `User${i}@Example.test`,
);

/** Recipients of the tenant domains, one of each {@link RECIPIENT_KINDS} in turn. */
function indexRecipients(domainCount: number): string[] {
  return Array.from({ length: 1000 }, (_, i) => {
    const domain = tenantDomain((i * 7919) % domainCount);
    switch (RECIPIENT_KINDS[i % RECIPIENT_KINDS.length]) {
      case 'exact':
        return `user${i % 8}@${domain}`;
      case 'tagged':
        return `User${i % 8}+ticket-${i}@${domain.toUpperCase()}`;
      case 'glob':
        return `support-${i}@${domain}`;
      default:
        return `someone${i}@${domain}`;
    }
  });
}

/** Answers as the resolver it wraps, timing each decision the listener asks of it. */
class TimedRouter extends Router {
  readonly recipients: string[] = [];
  readonly nanoseconds: number[] = [];
  readonly #inner: Router;

  constructor(inner: Router) {
    super({ domains: [], routes: [] });
    this.#inner = inner;
  }

  override resolve(recipient: string): RecipientRoute {
    const start = process.hrtime.bigint();
    try {
      return this.#inner.resolve(recipient);
    } finally {
      this.nanoseconds.push(Number(process.hrtime.bigint() - start));
      this.recipients.push(recipient);
    }
  }
}

/**
 * A full reload of the routes, as each listener task's route sync does every 10 minutes, from a
 * store answering at once: how long it takes, and the longest the event loop (which answers SMTP)
 * waited meanwhile. Run with the listener's V8 flags, which set the length of the collections
 * that fall in it.
 */
export async function runReload(options: { domains?: number } = {}): Promise<RcptReload> {
  const domainCount = options.domains ?? 10_000;
  const routeCount = domainCount * ROUTES_PER_DOMAIN;
  // Each page made afresh, as the store's client unmarshalls it: one page alive at a time.
  const stored = (i: number): StoredRoute => ({
    route: tenantRoute(i),
    secrets: [],
    revision: 1,
    createdAt: createdAt(i),
    updatedAt: '2026-01-01T00:00:00.000Z',
  });
  const domains = Array.from(
    { length: domainCount },
    (_, d): StoredDomain => ({
      name: tenantDomain(d),
      status: 'verified',
      token: '',
      claimedBy: 'bench',
      createdAt: '2026-01-01T00:00:00.000Z',
      claimExpiresAt: '2026-01-08T00:00:00.000Z',
      verifiedAt: '2026-01-01T00:00:00.000Z',
      revision: 1,
    }),
  );
  const sync = new RouteSync(stock, {
    pageRoutes: async (limit, cursor) => {
      const from = Number(cursor ?? 0);
      const to = Math.min(from + limit, routeCount);
      const items = Array.from({ length: to - from }, (_, k) => stored(from + k));
      return { items, nextCursor: to < routeCount ? String(to) : null };
    },
    listDomains: async () => domains,
    changesSince: async () => [],
  });
  // The first load, at start, runs before the listener takes mail; the reloads every 10 minutes
  // find the code compiled.
  await sync.reload();
  let last = performance.now();
  let longest = 0;
  let done = false;
  const turn = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (!done) setImmediate(turn);
  };
  setImmediate(turn);
  const started = performance.now();
  await sync.reload();
  const ms = performance.now() - started;
  await new Promise(setImmediate);
  done = true;
  return { ms, longestHoldMs: longest, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
}

/**
 * The heap the listener's per-route sender policy holds after one RCPT to each route, in
 * transactions of 100 recipients: what a task keeps once mail has come for every route.
 */
async function senderPolicyHeap(routes: readonly Route[]): Promise<number> {
  const filter = new SessionFilter(stock, {
    resolver: () => Promise.reject(new Error('no DNS in the bench')),
    report: { scanned: () => undefined, quarantined: () => undefined },
  });
  const session = {
    id: 'bench',
    remoteAddress: '192.0.2.1',
    hostNameAppearsAs: 'client.bench.test',
    envelope: { mailFrom: { address: 'sender@bench.test', args: false }, rcptTo: [] },
  } as unknown as SMTPServerSession;
  gc();
  const before = process.memoryUsage().heapUsed;
  filter.onConnect(session, { authPort: false });
  for (let i = 0; i < routes.length; i++) {
    if (i % 100 === 0) await filter.onMailFrom(session, 'sender@bench.test');
    await filter.onRcptTo(session, routes[i]!);
  }
  filter.onClose(session);
  gc();
  // A collection can leave the heap a little below where it started: that is nothing kept.
  return Math.max(0, (process.memoryUsage().heapUsed - before) / 2 ** 20);
}

export async function run(options: { lookups?: number; domains?: number } = {}): Promise<RcptResult> {
  const lookups = options.lookups ?? 400_000;
  const domainCount = options.domains ?? 10_000;
  // The heap counts the routes too, as a listener holds them: read from the store, put in the index,
  // and dropped by everything but the index.
  // The index's table is a typed array: its buffer is outside the heap, so it is counted too.
  const held = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  gc();
  const heapBefore = held();
  let routes = tenantRoutes(domainCount);
  const built = performance.now();
  const index = tenantIndex(routes, domainCount);
  const buildMs = performance.now() - built;
  routes = [];
  gc();
  const indexHeapMiB = (held() - heapBefore) / 2 ** 20;
  routes = tenantRoutes(domainCount);

  const router = new Router(stock);
  const tenantRecipients = indexRecipients(domainCount);
  for (const recipient of tenantRecipients) index.resolve(recipient);

  // Calls alternate one by one, so both sides meet the same interruptions of a shared machine
  // (another process, a GC of the bench itself) and the p99s compare the decisions, not luck.
  const routerSamples: number[] = [];
  const indexSamples: number[] = [];
  const routerResolve = (r: string) => router.resolve(r);
  const indexResolve = (r: string) => index.resolve(r);
  for (let i = 0; i < lookups; i++) {
    routerSamples.push(once(routerResolve, routerRecipients[i % routerRecipients.length]!));
    indexSamples.push(once(indexResolve, tenantRecipients[i % tenantRecipients.length]!));
  }

  // The Router holding the same 100,000 routes scans them all: a few hundred lookups tell enough.
  const scale = new Router({
    domains: [...stock.domains, '*.example'],
    routes: [...stock.routes, ...routes],
  });
  const scaleSamples = tenantRecipients.slice(0, 200).map((r) => once((x) => scale.resolve(x), r));

  const putRoute: number[] = [];
  const removeRoute: number[] = [];
  const putDomain: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const route = routes[(i * 104729) % routes.length]!;
    const changed = { ...route, match: [`changed${i}@${tenantDomain(i % domainCount)}`] };
    let start = process.hrtime.bigint();
    index.putRoute(changed, '2026-06-01T00:00:00.000Z');
    putRoute.push(Number(process.hrtime.bigint() - start));
    start = process.hrtime.bigint();
    index.removeRoute(changed.id);
    removeRoute.push(Number(process.hrtime.bigint() - start));
    index.putRoute(route, '2026-01-01T00:00:00.000Z');
    start = process.hrtime.bigint();
    index.putDomain(`new${i}.example`, 'pending');
    putDomain.push(Number(process.hrtime.bigint() - start));
  }

  const router99 = percentile(routerSamples, 99);
  const index99 = percentile(indexSamples, 99);
  return {
    routes: routes.length,
    domains: domainCount,
    lookups,
    router: { p50Ns: percentile(routerSamples, 50), p99Ns: router99 },
    index: { p50Ns: percentile(indexSamples, 50), p99Ns: index99 },
    p99Ratio: index99 / router99,
    p50Ratio: percentile(indexSamples, 50) / percentile(routerSamples, 50),
    routerAtScale: {
      p50Ns: percentile(scaleSamples, 50),
      p99Ns: percentile(scaleSamples, 99),
      lookups: scaleSamples.length,
    },
    change: {
      putRouteP50Ns: percentile(putRoute, 50),
      putRouteP99Ns: percentile(putRoute, 99),
      removeRouteP50Ns: percentile(removeRoute, 50),
      putDomainP50Ns: percentile(putDomain, 50),
    },
    indexHeapMiB,
    buildMs,
    senderPolicyHeapMiB: await senderPolicyHeap(routes),
  };
}

/**
 * Two listeners in this process, one deciding RCPT with the stock config's Router and one with the
 * index of 100,000 API routes, each asked by one SMTP session over loopback from a client process
 * ({@link rcptRounds}). Nothing reaches DATA, so the storage clients are never called.
 */
export async function runOverSmtp(
  options: { rounds?: number; domains?: number } = {},
): Promise<RcptSmtpResult> {
  const rounds = options.rounds ?? 40_000;
  const domainCount = options.domains ?? 10_000;
  const index = tenantIndex(tenantRoutes(domainCount), domainCount);
  const tenantRecipients = indexRecipients(domainCount);
  const config = parseConfig(
    {
      hostname: 'mx.bench.test',
      domains: stock.domains,
      routes: stock.routes.map(({ id, match }) => ({
        id,
        match,
        endpoints: ['http://127.0.0.1:9/hook'],
        secret: { value: 'whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQ=' },
      })),
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      // MAIL, RCPT, RSET and never DATA: the session counts them as idle commands.
      limits: { maxIdleCommands: 1_000_000 },
    },
    { source: 'bench', runtime: 'local' },
  );
  const tls = await generateSelfSigned('mx.bench.test');
  const storage = storageClients(config.limits, {
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    forcePathStyle: true,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const common = {
    config,
    ...storage,
    bucket: 'unused',
    inboundQueueUrl: 'http://127.0.0.1:9/q',
    tls,
    authUsers: new Map(),
  };
  // Both sides are wrapped alike, so the timing's own cost weighs on both round trips.
  const resolvers = [new TimedRouter(new Router(stock)), new TimedRouter(index)] as const;
  const listeners = [
    await startListener({ ...common, router: resolvers[0] }),
    await startListener({ ...common, router: resolvers[1] }),
  ] as const;
  // The client runs in a process of its own, as every peer does: its parsing and writing are not
  // the listener's work, and do not stand in the listener's caches.
  const client = new Worker('./rcpt.ts');
  try {
    await client.ready;
    const [routerSamples, indexSamples] = await client.call<[number[], number[]]>('rcptRounds', {
      rounds,
      sides: [
        { port: listeners[0].listeners[0]!.port, recipients: routerRecipients },
        { port: listeners[1].listeners[0]!.port, recipients: tenantRecipients },
      ],
    } satisfies RoundsRequest);
    const [router, indexed] = [routerSamples, indexSamples].map((samples) => ({
      p50Us: percentile(samples, 50),
      p99Us: percentile(samples, 99),
    })) as [RcptSmtpResult['router'], RcptSmtpResult['index']];
    const kindOf = new Map(tenantRecipients.map((r, i) => [r, RECIPIENT_KINDS[i % RECIPIENT_KINDS.length]!]));
    const byKind = (kind: RecipientKind) =>
      percentile(
        resolvers[1].nanoseconds.filter((_, i) => kindOf.get(resolvers[1].recipients[i]!) === kind),
        50,
      );
    return {
      rounds,
      router,
      index: indexed,
      p99Ratio: indexed.p99Us / router.p99Us,
      decisionNs: {
        router: percentile(resolvers[0].nanoseconds, 50),
        index: Object.fromEntries(RECIPIENT_KINDS.map((kind) => [kind, byKind(kind)])) as Record<
          RecipientKind,
          number
        >,
      },
    };
  } finally {
    await client.stop();
    for (const listener of listeners) await listener.close();
    storage.s3.destroy();
    storage.sqs.destroy();
  }
}

interface RoundsRequest {
  rounds: number;
  sides: { port: number; recipients: string[] }[];
}

/**
 * The client of {@link runOverSmtp}: one SMTP session per listener, MAIL, then the timed RCPT,
 * then RSET, alternating between them so both meet the same machine; the round trips in µs.
 */
export async function rcptRounds({ rounds, sides }: RoundsRequest): Promise<number[][]> {
  const sessions = await Promise.all(
    sides.map(async ({ port, recipients }) => ({
      session: await SmtpSession.open({ host: '127.0.0.1', port }),
      recipients,
      samples: [] as number[],
    })),
  );
  for (let i = 0; i < rounds; i++) {
    // Who goes first swaps every round: the second of a pair finds the machine warmer.
    for (const side of i % 2 ? [...sessions].reverse() : sessions) {
      await side.session.command('MAIL FROM:<sender@bench.test>', 250);
      const start = process.hrtime.bigint();
      await side.session.command(`RCPT TO:<${side.recipients[i % side.recipients.length]}>`, 250);
      side.samples.push(Number(process.hrtime.bigint() - start) / 1000);
      await side.session.command('RSET', 250);
    }
  }
  await Promise.all(sessions.map((side) => side.session.command('QUIT', 221)));
  return sessions.map((side) => side.samples);
}

function smtpRows(smtp: RcptSmtpResult): string[] {
  return [
    `| RCPT round trip over SMTP, config Router (${smtp.rounds.toLocaleString('en')} RCPTs) | ${smtp.router.p50Us.toFixed(0)} µs | ${smtp.router.p99Us.toFixed(0)} µs | 1.00× |`,
    `| RCPT round trip over SMTP, RcptIndex (target p99 ≤ 1.1×) | ${smtp.index.p50Us.toFixed(0)} µs | ${smtp.index.p99Us.toFixed(0)} µs | p50 ${(smtp.index.p50Us / smtp.router.p50Us).toFixed(2)}×, p99 ${smtp.p99Ratio.toFixed(2)}× |`,
    `| the decision inside those round trips: config Router; RcptIndex by recipient (${RECIPIENT_KINDS.join(', ')}) | ${smtp.decisionNs.router} ns | ${RECIPIENT_KINDS.map((kind) => `${smtp.decisionNs.index[kind]}`).join(' / ')} ns | – |`,
  ];
}

/** The section of the bench table. */
export function rcptReport(r: RcptResult, smtp?: RcptSmtpResult, reload?: RcptReload): string[] {
  const ns = (value: number) => (value >= 1e6 ? `${(value / 1e6).toFixed(1)} ms` : `${Math.round(value)} ns`);
  return [
    `### 8. RCPT decision (${r.routes.toLocaleString('en')} API routes, ${r.domains.toLocaleString('en')} API domains; ${r.lookups.toLocaleString('en')} lookups each; config Router with the stock config = 1.0)`,
    '',
    '| figure | p50 | p99 | ratio |',
    '|---|---|---|---|',
    `| config Router, stock config (2 routes) | ${ns(r.router.p50Ns)} | ${ns(r.router.p99Ns)} | 1.00× |`,
    `| RcptIndex, ${r.routes.toLocaleString('en')} routes (target p99 ≤ 1.1×) | ${ns(r.index.p50Ns)} | ${ns(r.index.p99Ns)} | p50 ${r.p50Ratio.toFixed(2)}×, p99 ${r.p99Ratio.toFixed(2)}× |`,
    `| config Router holding the same ${r.routes.toLocaleString('en')} routes (${r.routerAtScale.lookups} lookups) | ${ns(r.routerAtScale.p50Ns)} | ${ns(r.routerAtScale.p99Ns)} | p99 ${(r.routerAtScale.p99Ns / r.router.p99Ns).toFixed(0)}× |`,
    `| apply one change: route put (replace) / route remove / domain put | ${ns(r.change.putRouteP50Ns)} / ${ns(r.change.removeRouteP50Ns)} / ${ns(r.change.putDomainP50Ns)} | put ${ns(r.change.putRouteP99Ns)} | – |`,
    `| index memory with its routes (heap and its table's buffer), built in ${r.buildMs.toFixed(0)} ms | ${r.indexHeapMiB.toFixed(1)} MiB | | ${((r.indexHeapMiB * 2 ** 20) / r.routes).toFixed(0)} B per route |`,
    `| listener's sender-policy heap after one RCPT to each route | ${r.senderPolicyHeapMiB.toFixed(1)} MiB | | ${((r.senderPolicyHeapMiB * 2 ** 20) / r.routes).toFixed(0)} B per route |`,
    ...(reload
      ? [
          `| a full reload by route sync, listener's V8 flags: its time; the longest the thread that answers SMTP waited; peak RSS | ${reload.ms.toFixed(0)} ms | ${reload.longestHoldMs.toFixed(1)} ms | ${reload.peakRssMiB.toFixed(0)} MiB |`,
        ]
      : []),
    ...(smtp ? smtpRows(smtp) : []),
  ];
}

/**
 * Runs the measurements in a process of its own (with --expose-gc), prints their table, returns the
 * figures. With V8's default young generation, not the listener's `LISTENER_V8_FLAGS`: with those,
 * a young-generation collection (120–400 µs) falls on about one RCPT in a hundred on either side,
 * so both p99s are collection pauses and their ratio swung from 0.7× to 3× between runs.
 */
export async function rcptBench(
  log: (line: string) => void,
): Promise<RcptResult & { smtp: RcptSmtpResult; reload: RcptReload }> {
  log('RCPT decision');
  const worker = new Worker('./rcpt.ts', [], ['--expose-gc']);
  const listenerLike = new Worker('./rcpt.ts', [], [...LISTENER_V8_FLAGS]);
  try {
    await Promise.all([worker.ready, listenerLike.ready]);
    const result = await worker.call<RcptResult>('run', {});
    const smtp = await worker.call<RcptSmtpResult>('runOverSmtp', {});
    const reload = await listenerLike.call<RcptReload>('runReload', {});
    console.log(`${rcptReport(result, smtp, reload).join('\n')}\n`);
    return { ...result, smtp, reload };
  } finally {
    await Promise.all([worker.stop(), listenerLike.stop()]);
  }
}

if (process.send) serve({ run, runOverSmtp, runReload, rcptRounds });
else if (import.meta.main)
  console.log(rcptReport(await run(), await runOverSmtp(), await runReload()).join('\n'));
