import { setImmediate as nextTurn } from 'node:timers/promises';
import { decodeTime, encodeTime } from 'ulid';
import type { Config } from '../config.ts';
import type { Logger, Metrics } from '../observability.ts';
import { MetricUnit } from '../observability.ts';
import { RcptIndex, type RcptIndexOptions } from './rcpt-index.ts';
import { pipelineRoute } from './route-secrets.ts';
import type { Change, ChangeFeed, DomainStore, RouteStore, StoredDomain, StoredRoute } from './store.ts';

/**
 * Routes read and put in per turn of the event loop, and changes and domains put in per turn: the
 * listener answers SMTP on the same thread, and 100,000 routes take about a second to put in; a
 * slice, a few milliseconds. Reading routes a page at a time also keeps only one page of store
 * items in memory beside the index in force.
 */
const SLICE = 250;

/** How often each index reads the change feed, how far back, and how often it reloads everything. */
export const ROUTE_SYNC_DEFAULTS = {
  pollIntervalMs: 5000,
  overlapMs: 30_000,
  fullReloadIntervalMs: 600_000,
} as const;

export interface RouteSyncOptions extends RcptIndexOptions {
  /** How often to read the change feed; a change is in force within this plus one read. @default 5000 */
  pollIntervalMs?: number;
  /**
   * How far back each read starts before the last change seen: a write may commit after a later
   * change id is already visible (clock skew, SDK retries). @default 30000
   */
  overlapMs?: number;
  /** A full reload now and then heals a change item lost between its two writes. @default 600000 */
  fullReloadIntervalMs?: number;
  now?: () => Date;
  logger?: Logger;
  metrics?: Metrics;
}

type SyncStore = Pick<RouteStore, 'pageRoutes'> & Pick<DomainStore, 'listDomains'> & ChangeFeed;

/**
 * Keeps an {@link RcptIndex} in step with the store: a full load at start, then every poll the
 * route and domain changes since the last one, each applied only if its revision is newer than
 * what the index holds (a change read twice, or out of order, is a no-op). A failed poll keeps
 * the current index and is counted; the next one catches up.
 */
export class RouteSync {
  readonly #store: SyncStore;
  readonly #options: Required<
    Pick<RouteSyncOptions, 'pollIntervalMs' | 'overlapMs' | 'fullReloadIntervalMs'>
  > &
    RouteSyncOptions;
  readonly #now: () => Date;
  readonly #index: RcptIndex;
  /** Last revision applied per `route:<id>` / `domain:<name>`, deletions included. */
  #revisions = new Map<string, number>();
  #cursor = '';
  #lastFullLoad = 0;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;

  constructor(config: Pick<Config, 'domains' | 'routes'>, store: SyncStore, options: RouteSyncOptions = {}) {
    this.#store = store;
    this.#options = { ...ROUTE_SYNC_DEFAULTS, ...options };
    this.#now = options.now ?? (() => new Date());
    this.#index = new RcptIndex(config, options);
  }

  /** The index in force, changed in place by polls and reloads. */
  get index(): RcptIndex {
    return this.#index;
  }

  /** Loads everything, then polls until {@link stop}. Throws if the first load fails. */
  async start(): Promise<void> {
    await this.reload();
    const tick = () => {
      this.#polling = this.poll().finally(() => {
        this.#polling = undefined;
        if (this.#timer) this.#timer = setTimeout(tick, this.#options.pollIntervalMs).unref();
      });
    };
    this.#timer = setTimeout(tick, this.#options.pollIntervalMs).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#polling;
  }

  /**
   * Brings the index in force up to every route and domain in the store, in place: puts what is
   * newer than it holds, removes what the store no longer has, and keeps the rest as it is. This
   * heals a change whose change item was lost; a failure part way leaves changes already applied,
   * each a state the store was in.
   */
  async reload(): Promise<void> {
    const startedAt = this.#now().getTime();
    const revisions = new Map<string, number>();
    let cursor: string | undefined;
    do {
      if (cursor !== undefined) await nextTurn();
      const page = await this.#store.pageRoutes(SLICE, cursor);
      for (const route of page.items) {
        const key = `route:${route.route.id}`;
        if ((this.#revisions.get(key) ?? 0) < route.revision) {
          this.#putRoute(route);
          // Known at once, so a change read again by a poll after a failed reload is not applied over it.
          this.#revisions.set(key, route.revision);
        }
        revisions.set(key, route.revision);
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    for (const id of this.#index.apiRouteIds()) {
      if (!revisions.has(`route:${id}`)) this.#index.removeRoute(id);
    }
    const domains = await this.#store.listDomains();
    for (const [i, domain] of domains.entries()) {
      if (i > 0 && i % SLICE === 0) await nextTurn();
      const key = `domain:${domain.name}`;
      if ((this.#revisions.get(key) ?? 0) < domain.revision) {
        this.#putDomain(domain);
        this.#revisions.set(key, domain.revision);
      }
      revisions.set(key, domain.revision);
    }
    for (const name of this.#index.apiDomainNames()) {
      if (!revisions.has(`domain:${name}`)) this.#index.removeDomain(name);
    }
    this.#revisions = revisions;
    this.#cursor = encodeTime(Math.max(0, startedAt - this.#options.overlapMs), 10);
    this.#lastFullLoad = startedAt;
  }

  /** One read of the change feed (or a full reload when one is due). Never throws. */
  async poll(): Promise<void> {
    try {
      if (this.#now().getTime() - this.#lastFullLoad >= this.#options.fullReloadIntervalMs) {
        await this.reload();
        return;
      }
      const changes = await this.#store.changesSince(this.#cursor);
      let applied = 0;
      for (const [i, change] of changes.entries()) {
        if (i > 0 && i % SLICE === 0) await nextTurn();
        if (this.apply(change)) applied++;
      }
      const last = changes.at(-1);
      if (last) {
        const from = Math.max(0, decodeTime(last.id) - this.#options.overlapMs);
        if (encodeTime(from, 10) > this.#cursor) this.#cursor = encodeTime(from, 10);
      }
      if (applied > 0) this.#options.logger?.info('route changes applied', { applied });
    } catch (error) {
      this.#options.logger?.warn('route change poll failed; the index in force stays', { error });
      this.#options.metrics?.addMetric('RouteSyncFailures', MetricUnit.Count, 1);
      this.#options.metrics?.publishStoredMetrics();
    }
  }

  /** Applies one change if it is newer than what the index holds; true when it changed something. */
  apply(change: Change): boolean {
    const key = `${change.kind}:${change.key}`;
    if ((this.#revisions.get(key) ?? 0) >= change.revision) return false;
    this.#revisions.set(key, change.revision);
    if (change.kind === 'route') {
      if (change.route) this.#putRoute(change.route);
      else this.#index.removeRoute(change.key);
    } else if (change.domain) this.#putDomain(change.domain);
    else this.#index.removeDomain(change.key);
    return true;
  }

  #putRoute(stored: StoredRoute): void {
    // The index decides RCPT and holds the filtering policy; its copy of the route's secrets is never
    // used to sign: deliver reads the route as stored at each try, so a rotation's end takes effect at once.
    this.#index.putRoute(pipelineRoute(stored, this.#now()), stored.createdAt);
  }

  #putDomain(domain: StoredDomain): void {
    this.#index.putDomain(domain.name, domain.status);
  }
}
