import { monotonicFactory } from 'ulid';
import type * as z from 'zod';
import type { ZodType } from 'zod';
import { type Config, parseConfig, type Route, type Runtime } from '../config.ts';
import { ConfigError } from '../errors.ts';
import type { Logger, Metrics } from '../observability.ts';
import {
  DnsUnavailableError,
  domainRecords,
  hasDomainProof,
  newDomainClaim,
  type TxtResolver,
} from './domains.ts';
import { ApiError, StoreConflictError } from './errors.ts';
import { findApiKey, newApiKey } from './keys.ts';
import { MessageLogWriter } from './log-writer.ts';
import { detail, messageRoutes, summarize } from './message-view.ts';
import { openApiDocument } from './openapi.ts';
import { makeSigningSecret, rotateSecrets, type SigningSecretStore } from './route-secrets.ts';
import {
  ActivityQuerySchema,
  ActivitySchema,
  CreatedKeySchema,
  CreatedRouteSchema,
  DomainInputSchema,
  type DomainView,
  DomainViewSchema,
  ErrorSchema,
  type JobRef,
  KeyInputSchema,
  type KeyView,
  KeyViewSchema,
  MessageDetailSchema,
  MessageQuerySchema,
  MessageSummarySchema,
  PageQuerySchema,
  pageOf,
  RefusalQuerySchema,
  RefusalSchema,
  RetryRequestSchema,
  RetryResponseSchema,
  RotateSecretRequestSchema,
  RouteInputSchema,
  type RouteView,
  RouteViewSchema,
} from './schemas.ts';
import type {
  ControlStore,
  ObjectRef,
  Page,
  StoredDomain,
  StoredKey,
  StoredMessage,
  StoredRoute,
} from './store.ts';

/** An HTTP request as the adapters (API Gateway, node:http) hand it over; header names lowercase. */
export interface ApiRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: string | null;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Sends a message back through parse, which queues its deliveries again by the routes in force then;
 * implemented by the pipeline (it knows the stored message and the queues).
 */
export interface RetryPort {
  /**
   * `release`: deliver what filtering quarantined, instead of quarantining it again. Resolves to the
   * jobs known to be queued when it returns: none from the pipeline's port, as only parse knows
   * them (its `parsed` event lists them).
   */
  retry(request: {
    messageId: string;
    route: string | null;
    by: string;
    release?: boolean;
  }): Promise<JobRef[]>;
}

export interface ApiDeps {
  readonly store: ControlStore;
  /** The config file's routes and domains: shown read-only, never changed by the API. */
  readonly config: Pick<Config, 'domains' | 'routes'>;
  /** Which endpoint rules API routes must follow (plain http only for loopback in local runs). */
  readonly runtime: Runtime;
  /** The host name domains point their MX at. */
  readonly mxHost: string;
  readonly resolver: TxtResolver;
  readonly secrets: SigningSecretStore;
  readonly retry: RetryPort;
  /** A short-lived GET link to a raw message. */
  readonly presign: (raw: ObjectRef) => Promise<string>;
  readonly now?: () => Date;
  readonly logger?: Logger;
  /** Where failed writes of the `retried` event count (`ControlLogWriteFailures`, as the pipeline's). */
  readonly metrics?: Metrics;
}

interface Principal {
  readonly keyId: string;
  readonly scope: StoredKey['scope'];
}

interface Context {
  readonly deps: ApiDeps;
  /** Writes the events the API adds to a message's log (`retried`), retrying and counting as the pipeline's writers do. */
  readonly log: MessageLogWriter;
  readonly now: Date;
  readonly principal: Principal;
  readonly params: Record<string, string>;
  readonly request: ApiRequest;
}

interface Result {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** One API operation: what OpenAPI says about it and how it is served, side by side. */
export interface Operation {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: `/v1/${string}`;
  readonly operationId: string;
  readonly summary: string;
  readonly query?: z.ZodObject;
  readonly body?: ZodType;
  readonly responses: Readonly<Record<number, { description: string; schema?: ZodType }>>;
  readonly handle: (context: Context) => Promise<Result>;
}

const nextEventId = monotonicFactory();

/** How long a retry's answer waits for its `retried` event to be logged while the store fails. */
const RETRIED_LOG_MS = 2000;

function validationError(error: z.ZodError, where: string): ApiError {
  const issues = error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    return `${where}${path ? `.${path}` : ''}: ${issue.message}`;
  });
  return new ApiError(400, 'validation_failed', issues.join('; '));
}

function parseWith<T extends ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}

function readBody<T extends ZodType>(request: ApiRequest, schema: T): z.output<T> {
  let value: unknown = {};
  if (request.body !== null && request.body.trim() !== '') {
    try {
      value = JSON.parse(request.body);
    } catch {
      throw new ApiError(400, 'validation_failed', 'body: not valid JSON');
    }
  }
  return parseWith(schema, value, 'body');
}

/** Awaits a conditional store write, answering `onConflict` when it lost. */
async function unlessConflict<T>(write: Promise<T>, onConflict: () => ApiError): Promise<T> {
  try {
    return await write;
  } catch (error) {
    if (error instanceof StoreConflictError) throw Object.assign(onConflict(), { cause: error });
    throw error;
  }
}

const notFound = (what: string) => new ApiError(404, 'not_found', `${what} does not exist`);
const readOnly = (what: string) =>
  new ApiError(409, 'read_only', `${what} comes from the config file; change it there`);

/** The revision a client sent as `If-Match`, if any. */
function ifMatch(request: ApiRequest): number | undefined {
  const header = request.headers['if-match'];
  if (header === undefined) return undefined;
  const revision = Number(header.replace(/^W\//, '').replace(/"/g, ''));
  if (!Number.isInteger(revision))
    throw new ApiError(400, 'validation_failed', 'If-Match: expected a route revision');
  return revision;
}

function configRouteView(route: Route): RouteView {
  const { secret: _secret, ...fields } = route;
  return { ...fields, source: 'config', revision: 0, createdAt: null, signingSecrets: [] };
}

function apiRouteView(stored: StoredRoute): RouteView {
  return {
    ...stored.route,
    source: 'api',
    revision: stored.revision,
    createdAt: stored.createdAt,
    signingSecrets: stored.secrets.map(({ id, createdAt, expiresAt }) => ({ id, createdAt, expiresAt })),
  };
}

/**
 * The endpoint, pattern and secret rules of the config file, applied to one API route; its `/regex/`
 * patterns are checked as RE2 will run them.
 */
function routeIssues(route: Record<string, unknown>, runtime: Runtime): string[] {
  try {
    parseConfig(
      {
        domains: ['example.invalid'],
        // A placeholder reference: API routes get their secret from the API, never from the body.
        routes: [{ ...route, secret: { env: 'MAILBRIDGE_API_ROUTE_SECRET' } }],
        listeners: [{ port: 0, mode: 'mx' }],
        health: { port: 0 },
      },
      { source: 'route', runtime, regexEngine: 're2' },
    );
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // Only the route's own fields: the rest of the document is scaffolding.
    return error.issues
      .filter((issue) => issue.startsWith('routes[0]'))
      .map((issue) => `body.${issue.replace(/^routes\[0\]\.?/, '')}`);
  }
}

/**
 * `/regex/` patterns the API routes may hold together: every recipient that no exact address or
 * domain pattern takes is tried against each of them, at every RCPT.
 */
export const MAX_API_REGEXES = 100;

const regexesIn = (match: readonly string[]) => match.filter((pattern) => pattern.startsWith('/')).length;

/**
 * Refuses a route that would take the API routes over {@link MAX_API_REGEXES} regexes. The store
 * counts nothing, so this reads every API route: only when the route holds more regexes than the one
 * it replaces, which only a few requests ever do.
 */
async function checkRegexBudget(
  store: ControlStore,
  route: { id: string; match: readonly string[] },
  replacing?: StoredRoute,
): Promise<void> {
  const own = regexesIn(route.match);
  if (own <= regexesIn(replacing?.route.match ?? [])) return;
  let total = own;
  let cursor: string | undefined;
  do {
    const page = await store.pageRoutes(1000, cursor);
    for (const other of page.items) if (other.route.id !== route.id) total += regexesIn(other.route.match);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  if (total > MAX_API_REGEXES) {
    throw new ApiError(
      409,
      'limit_reached',
      `body.match: API routes hold at most ${MAX_API_REGEXES} /regex/ patterns together, and this would make ${total} (each is tried for every recipient); use exact addresses, "*@domain" or globs`,
    );
  }
}

/**
 * Where a page of `GET /v1/routes` starts in the one list it pages through, the config file's routes
 * and then the API's: an index into the first (cursor `config:<index>`), or the store's cursor into
 * the second (`api:<cursor>`, empty for its start).
 */
/**
 * One list under one `limit`: the config file's items first, then the store's pages. Cursors say
 * which list they continue: `config:<index>` or `api:<the store's cursor>`.
 */
async function configThenStore<T>(
  config: readonly T[],
  { limit, cursor }: { limit: number; cursor?: string | undefined },
  pageStore: (limit: number, cursor: string | undefined) => Promise<Page<T>>,
): Promise<Page<T>> {
  const [list, rest = ''] =
    cursor === undefined ? ['config', '0'] : (/^(config|api):(.*)$/.exec(cursor)?.slice(1) ?? []);
  if (list !== 'api' && !(list === 'config' && /^\d+$/.test(rest))) {
    throw new ApiError(400, 'validation_failed', 'query.cursor: not a cursor this API made');
  }
  const items: T[] = [];
  if (list === 'config') {
    const end = Math.min(Number(rest) + limit, config.length);
    items.push(...config.slice(Number(rest), end));
    if (end < config.length) return { items, nextCursor: `config:${end}` };
    if (items.length === limit) return { items, nextCursor: 'api:' };
  }
  const page = await pageStore(limit - items.length, list === 'api' ? rest || undefined : undefined);
  items.push(...page.items);
  return { items, nextCursor: page.nextCursor === null ? null : `api:${page.nextCursor}` };
}

function configDomainCovers(config: Pick<Config, 'domains'>, name: string): string | undefined {
  return config.domains.find((domain) =>
    domain.startsWith('*.') ? name === domain.slice(2) || name.endsWith(domain.slice(1)) : domain === name,
  );
}

function domainView(deps: ApiDeps, domain: StoredDomain): DomainView {
  return {
    name: domain.name,
    status: domain.status,
    source: 'api',
    records: domainRecords(domain.name, domain.token, deps.mxHost),
  };
}

function configDomainView(deps: ApiDeps, name: string): DomainView {
  return {
    name,
    status: 'verified',
    source: 'config',
    records: [{ type: 'MX', name, value: `10 ${deps.mxHost}` }],
  };
}

const keyView = ({ id, name, scope, createdAt }: StoredKey): KeyView => ({ id, name, scope, createdAt });

async function currentRoute(context: Context): Promise<StoredRoute> {
  const { id } = context.params as { id: string };
  if (context.deps.config.routes.some((route) => route.id === id)) throw readOnly(`route ${id}`);
  const stored = await context.deps.store.getRoute(id);
  if (!stored) throw notFound(`route ${id}`);
  return stored;
}

/** The message a path names; a ULID is case-insensitive (Crockford's base 32), so any case finds it. */
async function pathMessage(deps: ApiDeps, param: string): Promise<StoredMessage> {
  const id = param.toUpperCase();
  const message = /^[0-9A-HJKMNP-TV-Z]{26}$/.test(id) ? await deps.store.getMessage(id) : undefined;
  if (!message) throw notFound(`message ${param}`);
  return message;
}

/**
 * Retry and release: the message goes back through parse by the pipeline's port, then a `retried`
 * event (`reparse`: the `parsed` event that follows lists the jobs, and they replace the route's
 * earlier ones).
 */
async function requeue(
  { deps, log, params, principal, request, now }: Context,
  release: boolean,
): Promise<Result> {
  const { route } = readBody(request, RetryRequestSchema);
  const message = await pathMessage(deps, params.id!);
  if (route !== undefined) {
    if (!messageRoutes(message.timeline).includes(route)) {
      throw new ApiError(
        400,
        'validation_failed',
        `body.route: message ${message.id} never went to route "${route}"`,
      );
    }
    // Parse would queue nothing for it: the answer would promise a delivery that never comes.
    if (!deps.config.routes.some((r) => r.id === route) && !(await deps.store.getRoute(route))) {
      throw new ApiError(
        409,
        'conflict',
        `route "${route}" no longer exists: retry every route to deliver message ${message.id} by the routes in force`,
      );
    }
  }
  const jobs = await deps.retry.retry({
    messageId: message.id,
    route: route ?? null,
    by: principal.keyId,
    ...(release ? { release } : {}),
  });
  // The message is queued: answering an error would only invite a second retry. The writer tries
  // again while the store fails (counted), past the answer if it has to; without the event the
  // status would count the route's superseded jobs.
  log.record(message.id, {
    // The request's time, from before the message was queued: the re-parse's events sort after it.
    at: now.toISOString(),
    type: 'retried',
    by: principal.keyId,
    route: route ?? null,
    jobs,
    reparse: true,
    ...(release ? { release } : {}),
  });
  if (!(await log.flush(RETRIED_LOG_MS))) {
    deps.logger?.warn('retried event not logged yet; still trying', { messageId: message.id });
  }
  return { status: 202, body: { messageId: message.id, jobs } };
}

/** Every operation of the API, in the order the OpenAPI document lists them. */
export const OPERATIONS: readonly Operation[] = [
  {
    method: 'GET',
    path: '/v1/messages',
    operationId: 'listMessages',
    summary: 'Messages, newest first, filtered',
    query: MessageQuerySchema,
    responses: { 200: { description: 'A page of messages', schema: pageOf(MessageSummarySchema) } },
    async handle({ deps, now, request }) {
      const query = parseWith(MessageQuerySchema, request.query, 'query');
      const page = await deps.store.listMessages(query, now);
      return { status: 200, body: { items: page.items.map(summarize), nextCursor: page.nextCursor } };
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/{id}',
    operationId: 'getMessage',
    summary: 'One message with its timeline and a link to the raw message',
    responses: { 200: { description: 'The message', schema: MessageDetailSchema } },
    async handle({ deps, params }) {
      const message = await pathMessage(deps, params.id!);
      return { status: 200, body: detail(message, message.raw ? await deps.presign(message.raw) : null) };
    },
  },
  {
    method: 'POST',
    path: '/v1/messages/{id}/retry',
    operationId: 'retryMessage',
    summary: 'Deliver a message again, to every route or one',
    body: RetryRequestSchema,
    responses: {
      202: { description: 'Queued for parse, which builds the deliveries', schema: RetryResponseSchema },
    },
    handle: (context) => requeue(context, false),
  },
  {
    method: 'POST',
    path: '/v1/messages/{id}/release',
    operationId: 'releaseMessage',
    summary: 'Deliver a quarantined message, to every route or one',
    body: RetryRequestSchema,
    responses: {
      202: { description: 'Queued for parse, which builds the deliveries', schema: RetryResponseSchema },
    },
    handle: (context) => requeue(context, true),
  },
  {
    method: 'GET',
    path: '/v1/activity',
    operationId: 'listActivity',
    summary:
      'Messages whose delivery moved again since a time (a retry scheduled or tried, a dead letter, parse given up, a retry, release or replay asked)',
    query: ActivityQuerySchema,
    responses: {
      200: {
        description:
          'A page of follow-up writes, oldest first; with `GET /v1/messages?since=` it follows every message, whenever it arrived',
        schema: pageOf(ActivitySchema),
      },
    },
    async handle({ deps, request, now }) {
      const query = parseWith(ActivityQuerySchema, request.query, 'query');
      const page = await deps.store.listActivity({
        ...query,
        since: query.since ?? new Date(now.getTime() - 60_000).toISOString(),
      });
      return { status: 200, body: page };
    },
  },
  {
    method: 'GET',
    path: '/v1/refusals',
    operationId: 'listRefusals',
    summary: 'Recent SMTP refusals (bounded per minute)',
    query: RefusalQuerySchema,
    responses: { 200: { description: 'A page of refusals, newest first', schema: pageOf(RefusalSchema) } },
    async handle({ deps, request, now }) {
      const query = parseWith(RefusalQuerySchema, request.query, 'query');
      const page = await deps.store.listRefusals({
        ...query,
        since: query.since ?? new Date(now.getTime() - 3600_000).toISOString(),
      });
      return { status: 200, body: page };
    },
  },
  {
    method: 'GET',
    path: '/v1/routes',
    operationId: 'listRoutes',
    summary: 'Routes: the config file’s, then the API’s, in pages',
    query: PageQuerySchema,
    responses: { 200: { description: 'A page of routes', schema: pageOf(RouteViewSchema) } },
    async handle({ deps, request }) {
      const query = parseWith(PageQuerySchema, request.query, 'query');
      const body = await configThenStore<RouteView>(
        deps.config.routes.map(configRouteView),
        query,
        async (limit, cursor) => {
          const page = await deps.store.pageRoutes(limit, cursor);
          return { items: page.items.map(apiRouteView), nextCursor: page.nextCursor };
        },
      );
      return { status: 200, body };
    },
  },
  {
    method: 'POST',
    path: '/v1/routes',
    operationId: 'createRoute',
    summary: 'Create a route; its signing secret is in this answer only',
    body: RouteInputSchema,
    responses: { 201: { description: 'The route, with its signing secret', schema: CreatedRouteSchema } },
    async handle({ deps, request, now }) {
      const input = readBody(request, RouteInputSchema);
      const route = { ...input, id: input.id ?? `rt_${nextEventId().toLowerCase()}` };
      // With the id it gets: a route may come without one.
      const issues = routeIssues({ ...JSON.parse(request.body ?? '{}'), id: route.id }, deps.runtime);
      if (issues.length > 0) throw new ApiError(400, 'validation_failed', issues.join('; '));
      if (deps.config.routes.some((r) => r.id === route.id)) throw readOnly(`route ${route.id}`);
      await checkRegexBudget(deps.store, route);
      const { secret, value } = await makeSigningSecret(deps.secrets, route.id, now);
      let stored: StoredRoute;
      try {
        stored = await deps.store.createRoute({
          route,
          secrets: [secret],
          createdAt: now.toISOString(),
          updatedAt: now.toISOString(),
        });
      } catch (error) {
        await deps.secrets.remove(secret.ref);
        throw error;
      }
      return {
        status: 201,
        body: { ...apiRouteView(stored), signingSecret: value },
        headers: { location: `/v1/routes/${encodeURIComponent(route.id)}`, etag: `"${stored.revision}"` },
      };
    },
  },
  {
    method: 'GET',
    path: '/v1/routes/{id}',
    operationId: 'getRoute',
    summary: 'One route',
    responses: { 200: { description: 'The route; ETag is its revision', schema: RouteViewSchema } },
    async handle({ deps, params }) {
      const config = deps.config.routes.find((route) => route.id === params.id);
      if (config) return { status: 200, body: configRouteView(config) };
      const stored = await deps.store.getRoute(params.id!);
      if (!stored) throw notFound(`route ${params.id}`);
      return { status: 200, body: apiRouteView(stored), headers: { etag: `"${stored.revision}"` } };
    },
  },
  {
    method: 'PUT',
    path: '/v1/routes/{id}',
    operationId: 'replaceRoute',
    summary: 'Replace an API route (If-Match: its revision, to refuse a concurrent change)',
    body: RouteInputSchema,
    responses: { 200: { description: 'The route', schema: RouteViewSchema } },
    async handle(context) {
      const { deps, request, now } = context;
      const current = await currentRoute(context);
      const input = readBody(request, RouteInputSchema);
      if (input.id !== undefined && input.id !== current.route.id) {
        throw new ApiError(400, 'validation_failed', 'body.id: a route id cannot change');
      }
      // With the path's id: the body may leave it out.
      const issues = routeIssues({ ...JSON.parse(request.body ?? '{}'), id: current.route.id }, deps.runtime);
      if (issues.length > 0) throw new ApiError(400, 'validation_failed', issues.join('; '));
      const route = { ...input, id: current.route.id };
      await checkRegexBudget(deps.store, route, current);
      const stored = await deps.store.updateRoute(
        { ...current, route, updatedAt: now.toISOString() },
        ifMatch(request) ?? current.revision,
      );
      return { status: 200, body: apiRouteView(stored), headers: { etag: `"${stored.revision}"` } };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/routes/{id}',
    operationId: 'deleteRoute',
    summary: 'Delete an API route; its recipients get 550 5.1.1 within seconds',
    responses: { 204: { description: 'Deleted' } },
    async handle(context) {
      const current = await currentRoute(context);
      await context.deps.store.deleteRoute(current.route.id, ifMatch(context.request) ?? current.revision);
      for (const secret of current.secrets) await context.deps.secrets.remove(secret.ref);
      return { status: 204 };
    },
  },
  {
    method: 'POST',
    path: '/v1/routes/{id}/secrets',
    operationId: 'rotateRouteSecret',
    summary: 'Make a new signing secret; the older ones keep signing for the overlap',
    body: RotateSecretRequestSchema,
    responses: { 201: { description: 'The route, with the new secret', schema: CreatedRouteSchema } },
    async handle(context) {
      const { deps, request, now } = context;
      const current = await currentRoute(context);
      const { overlapSeconds } = readBody(request, RotateSecretRequestSchema);
      const { secret, value } = await makeSigningSecret(deps.secrets, current.route.id, now);
      const { keep, drop } = rotateSecrets(current.secrets, secret, now, overlapSeconds);
      let stored: StoredRoute;
      try {
        stored = await deps.store.updateRoute(
          { ...current, secrets: keep, updatedAt: now.toISOString() },
          ifMatch(request) ?? current.revision,
        );
      } catch (error) {
        await deps.secrets.remove(secret.ref);
        throw error;
      }
      for (const old of drop) await deps.secrets.remove(old.ref);
      return {
        status: 201,
        body: { ...apiRouteView(stored), signingSecret: value },
        headers: { etag: `"${stored.revision}"` },
      };
    },
  },
  {
    method: 'GET',
    path: '/v1/domains',
    operationId: 'listDomains',
    summary: 'Domains: the config file’s, then the API’s, in pages',
    query: PageQuerySchema,
    responses: { 200: { description: 'A page of domains', schema: pageOf(DomainViewSchema) } },
    async handle({ deps, request }) {
      const query = parseWith(PageQuerySchema, request.query, 'query');
      const body = await configThenStore<DomainView>(
        deps.config.domains.map((name) => configDomainView(deps, name)),
        query,
        async (limit, cursor) => {
          const page = await deps.store.pageDomains(limit, cursor);
          return { items: page.items.map((d) => domainView(deps, d)), nextCursor: page.nextCursor };
        },
      );
      return { status: 200, body };
    },
  },
  {
    method: 'POST',
    path: '/v1/domains',
    operationId: 'addDomain',
    summary: 'Claim a domain: publish the records returned, then verify',
    body: DomainInputSchema,
    responses: { 201: { description: 'The pending domain and what to publish', schema: DomainViewSchema } },
    async handle({ deps, request, principal, now }) {
      const { name } = readBody(request, DomainInputSchema);
      const covering = configDomainCovers(deps.config, name);
      if (covering)
        throw new ApiError(409, 'read_only', `domain ${name} is in the config file (${covering})`);
      const stored = await unlessConflict(
        deps.store.claimDomain(newDomainClaim(name, principal.keyId, now), now),
        () => new ApiError(409, 'conflict', `domain ${name} is already claimed (verified, or pending proof)`),
      );
      return {
        status: 201,
        body: domainView(deps, stored),
        headers: { location: `/v1/domains/${encodeURIComponent(name)}` },
      };
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{name}',
    operationId: 'getDomain',
    summary: 'One domain',
    responses: { 200: { description: 'The domain', schema: DomainViewSchema } },
    async handle({ deps, params }) {
      const name = params.name!.toLowerCase();
      if (deps.config.domains.includes(name)) return { status: 200, body: configDomainView(deps, name) };
      const stored = await deps.store.getDomain(name);
      if (!stored) throw notFound(`domain ${name}`);
      return { status: 200, body: domainView(deps, stored) };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/domains/{name}',
    operationId: 'deleteDomain',
    summary: 'Remove an API domain; its mail gets 550 5.7.1 within seconds',
    responses: { 204: { description: 'Removed' } },
    async handle({ deps, params }) {
      const name = params.name!.toLowerCase();
      if (deps.config.domains.includes(name)) throw readOnly(`domain ${name}`);
      await unlessConflict(deps.store.deleteDomain(name), () => notFound(`domain ${name}`));
      return { status: 204 };
    },
  },
  {
    method: 'POST',
    path: '/v1/domains/{name}/verify',
    operationId: 'verifyDomain',
    summary: 'Check the TXT proof in DNS; pending → verified',
    responses: {
      200: { description: 'The domain, verified', schema: DomainViewSchema },
      422: { description: 'The TXT record is not there (yet)', schema: ErrorSchema },
      503: { description: "The domain's DNS did not answer: try again", schema: ErrorSchema },
    },
    async handle({ deps, params, now }) {
      const name = params.name!.toLowerCase();
      if (deps.config.domains.includes(name)) return { status: 200, body: configDomainView(deps, name) };
      const stored = await deps.store.getDomain(name);
      if (!stored) throw notFound(`domain ${name}`);
      if (stored.status === 'verified') return { status: 200, body: domainView(deps, stored) };
      let proven: boolean;
      try {
        proven = await hasDomainProof(deps.resolver, name, stored.token);
      } catch (error) {
        if (error instanceof DnsUnavailableError) throw new ApiError(503, 'dns_unavailable', error.message);
        throw error;
      }
      if (!proven) {
        const txt = domainRecords(name, stored.token, deps.mxHost).find((record) => record.type === 'TXT')!;
        throw new ApiError(422, 'verification_failed', `TXT ${txt.name} does not hold "${txt.value}" yet`);
      }
      const verified = await unlessConflict(
        deps.store.markDomainVerified(name, stored.token, now.toISOString()),
        () => new ApiError(409, 'conflict', `domain ${name} was claimed again or removed meanwhile`),
      );
      return { status: 200, body: domainView(deps, verified) };
    },
  },
  {
    method: 'GET',
    path: '/v1/keys',
    operationId: 'listKeys',
    summary: 'API keys (never their secrets)',
    responses: { 200: { description: 'Every key', schema: pageOf(KeyViewSchema) } },
    async handle({ deps }) {
      return { status: 200, body: { items: (await deps.store.listKeys()).map(keyView), nextCursor: null } };
    },
  },
  {
    method: 'POST',
    path: '/v1/keys',
    operationId: 'createKey',
    summary: 'Create an API key; its secret is in this answer only',
    body: KeyInputSchema,
    responses: { 201: { description: 'The key, with its secret', schema: CreatedKeySchema } },
    async handle({ deps, request, now }) {
      const { name, scope } = readBody(request, KeyInputSchema);
      const { secret, stored } = newApiKey(name, scope, now);
      await deps.store.createKey(stored);
      return { status: 201, body: { ...keyView(stored), secret } };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/keys/{id}',
    operationId: 'revokeKey',
    summary: 'Revoke an API key; it fails from the next request on',
    responses: { 204: { description: 'Revoked' } },
    async handle({ deps, params }) {
      await unlessConflict(deps.store.deleteKey(params.id!), () => notFound(`key ${params.id}`));
      return { status: 204 };
    },
  },
  {
    method: 'GET',
    path: '/v1/openapi.json',
    operationId: 'openApi',
    summary: 'This API’s OpenAPI 3.1 document',
    responses: { 200: { description: 'The document' } },
    async handle() {
      return { status: 200, body: openApiDocument(OPERATIONS) };
    },
  },
];

const json = (status: number, body: unknown, headers: Record<string, string> = {}): ApiResponse => ({
  status,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  body: body === undefined ? '' : JSON.stringify(body),
});

const errorResponse = (error: ApiError, headers: Record<string, string> = {}) =>
  json(error.status, { error: { code: error.code, message: error.message } }, headers);

const compiled = OPERATIONS.map((operation) => ({
  operation,
  pattern: new RegExp(`^${operation.path.replace(/\{(\w+)\}/g, '(?<$1>[^/]+)')}$`),
}));

/**
 * The control plane API as one function from request to response, over the store and the ports in
 * `deps`; API Gateway (functions/api) and node:http (dev) only translate. Every request needs a
 * Bearer API key (401 without a valid one), and a read-only key may only GET (403). Keys are never
 * logged: a request is logged by its key id.
 */
export function createApiHandler(deps: ApiDeps): (request: ApiRequest) => Promise<ApiResponse> {
  const clock = deps.now ?? (() => new Date());
  const log = new MessageLogWriter(deps.store, {
    batchDelayMs: 0,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
  return async (request) => {
    const started = Date.now();
    let principal: Principal | undefined;
    let response: ApiResponse;
    try {
      principal = await authenticate(deps, request);
      const path = request.path.length > 1 ? request.path.replace(/\/+$/, '') : request.path;
      const matches = compiled.filter(({ pattern }) => pattern.test(path));
      if (matches.length === 0) throw notFound(`${path}`);
      const match = matches.find(({ operation }) => operation.method === request.method);
      if (!match) {
        const allow = matches.map(({ operation }) => operation.method).join(', ');
        response = errorResponse(
          new ApiError(405, 'method_not_allowed', `${request.method} ${path}: use ${allow}`),
          {
            allow,
          },
        );
      } else {
        if (match.operation.method !== 'GET' && principal.scope !== 'full') {
          throw new ApiError(403, 'forbidden', `key ${principal.keyId} is read-only`);
        }
        const params = Object.fromEntries(
          Object.entries(match.pattern.exec(path)!.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]),
        );
        const result = await match.operation.handle({ deps, log, now: clock(), principal, params, request });
        response = json(result.status, result.body, result.headers);
      }
    } catch (error) {
      response = toErrorResponse(error, deps, request);
    }
    deps.logger?.info('api request', {
      method: request.method,
      path: request.path,
      status: response.status,
      keyId: principal?.keyId,
      durationMs: Date.now() - started,
    });
    return response;
  };
}

async function authenticate(deps: ApiDeps, request: ApiRequest): Promise<Principal> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  const key = match ? await findApiKey(deps.store, match[1]!) : undefined;
  if (!key) throw new ApiError(401, 'unauthorized', 'send a valid API key as "Authorization: Bearer mbk_…"');
  return { keyId: key.id, scope: key.scope };
}

function toErrorResponse(error: unknown, deps: ApiDeps, request: ApiRequest): ApiResponse {
  if (error instanceof ApiError) {
    return errorResponse(
      error,
      error.status === 401 ? { 'www-authenticate': 'Bearer realm="mailbridge"' } : {},
    );
  }
  if (error instanceof StoreConflictError) return errorResponse(new ApiError(409, 'conflict', error.message));
  if (error instanceof RangeError && error.message.startsWith('cursor:')) {
    return errorResponse(new ApiError(400, 'validation_failed', `query.${error.message}`));
  }
  deps.logger?.error('api request failed', { method: request.method, path: request.path, error });
  return errorResponse(new ApiError(500, 'internal', 'internal error; see the logs'));
}
