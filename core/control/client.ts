import type * as z from 'zod';
import type { FilteringFacts } from '../filtering/schemas.ts';
import type {
  Activity,
  DomainView,
  JobRef,
  KeyScope,
  KeyView,
  MessageDetail,
  MessageQuery,
  MessageSummary,
  Refusal,
  RefusalQuery,
  RouteInputSchema,
  RouteView,
  TimelineEvent,
} from './schemas.ts';

/** A page of a list, as the API answers it. */
export interface ApiPage<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

/** An answer other than 2xx: the HTTP status and the API's `{ error: { code, message } }`. */
export class ApiClientError extends Error {
  override name = 'ApiClientError';
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The API could not be reached at all (refused, reset, DNS): nothing was answered. */
export class ApiUnreachableError extends Error {
  override name = 'ApiUnreachableError';
}

/** A query as the list operations take it: every field optional, the defaults the API's. */
export type MessageListQuery = Partial<Omit<MessageQuery, 'limit'>> & { limit?: number };

export interface ApiClientOptions {
  /** The API's base URL, with or without the `/v1` the operations live under. */
  readonly url: string;
  /** `mbk_…`, sent as a Bearer token. */
  readonly key: string;
  readonly fetch?: typeof fetch;
  /** Per request. @default 30 s */
  readonly timeoutMs?: number;
}

/**
 * A typed client of the control plane API (schema/openapi.v1.json) over `fetch`, shared by the
 * CLI and the dev inbox. A non-2xx answer throws {@link ApiClientError}, no answer
 * {@link ApiUnreachableError}.
 */
export function apiClient(options: ApiClientOptions) {
  const base = options.url.replace(/\/+$/, '').replace(/\/v1$/, '');
  const send = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 30_000;

  async function call<T>(
    method: string,
    path: string,
    request: { query?: Record<string, string | number | undefined>; body?: unknown } = {},
  ): Promise<T> {
    const url = new URL(`${base}/v1${path}`);
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    let response: Response;
    try {
      response = await send(url, {
        method,
        headers: {
          authorization: `Bearer ${options.key}`,
          accept: 'application/json',
          ...(request.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiUnreachableError(
        `cannot reach the API at ${base}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
        { cause: error },
      );
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      throw new ApiClientError(
        response.status,
        typeof error?.code === 'string' ? error.code : 'http_error',
        typeof error?.message === 'string' ? error.message : `HTTP ${response.status} ${response.statusText}`,
      );
    }
    return body as T;
  }

  const id = encodeURIComponent;
  return {
    /** The base URL, without `/v1`. */
    url: base,
    listMessages: (query: MessageListQuery = {}) =>
      call<ApiPage<MessageSummary>>('GET', '/messages', { query }),
    listActivity: (query: { since?: string; limit?: number; cursor?: string } = {}) =>
      call<ApiPage<Activity>>('GET', '/activity', { query }),
    getMessage: (messageId: string) => call<MessageDetail>('GET', `/messages/${id(messageId)}`),
    listRefusals: (query: Partial<RefusalQuery> = {}) =>
      call<ApiPage<Refusal>>('GET', '/refusals', { query }),
    retryMessage: (messageId: string, route?: string) =>
      call<{ messageId: string; jobs: JobRef[] }>('POST', `/messages/${id(messageId)}/retry`, {
        body: route === undefined ? {} : { route },
      }),
    releaseMessage: (messageId: string, route?: string) =>
      call<{ messageId: string; jobs: JobRef[] }>('POST', `/messages/${id(messageId)}/release`, {
        body: route === undefined ? {} : { route },
      }),
    listRoutes: (page: { limit?: number; cursor?: string } = {}) =>
      call<ApiPage<RouteView>>('GET', '/routes', { query: page }),
    createRoute: (route: z.input<typeof RouteInputSchema>) =>
      call<RouteView & { signingSecret: string }>('POST', '/routes', { body: route }),
    deleteRoute: (routeId: string) => call<void>('DELETE', `/routes/${id(routeId)}`),
    listDomains: (page: { limit?: number; cursor?: string } = {}) =>
      call<ApiPage<DomainView>>('GET', '/domains', { query: page }),
    addDomain: (name: string) => call<DomainView>('POST', '/domains', { body: { name } }),
    verifyDomain: (name: string) => call<DomainView>('POST', `/domains/${id(name)}/verify`),
    deleteDomain: (name: string) => call<void>('DELETE', `/domains/${id(name)}`),
    listKeys: () => call<ApiPage<KeyView>>('GET', '/keys'),
    createKey: (key: { name: string; scope: KeyScope }) =>
      call<KeyView & { secret: string }>('POST', '/keys', { body: key }),
    revokeKey: (keyId: string) => call<void>('DELETE', `/keys/${id(keyId)}`),
  };
}

export type ApiClient = ReturnType<typeof apiClient>;

function bytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

const answer = (status: number | null) => (status === null ? 'no answer' : `HTTP ${status}`);

/**
 * The listener's verdicts and the routes whose copy it held back or let through for a reason, on
 * one line; a scanner that is off, and a route's copy going on as usual, say nothing.
 */
function describeFiltering({ spam, virus, routes }: FilteringFacts): string {
  const scans = [
    spam.status === 'scanned'
      ? `spam score ${spam.score} (${spam.action})`
      : spam.reason === 'disabled'
        ? ''
        : `spam scan unavailable (${spam.reason})`,
    virus.status === 'scanned'
      ? virus.infected
        ? `infected: ${virus.names.join(', ')}`
        : 'virus scan clean'
      : virus.reason === 'disabled'
        ? ''
        : `virus scan unavailable (${virus.reason})`,
  ];
  const decisions = Object.entries(routes)
    .filter(([, { action, reasons }]) => action === 'quarantine' || reasons.length > 0)
    .map(
      ([route, { action, reasons }]) =>
        `route ${route} ${action === 'quarantine' ? 'quarantined' : 'let through'}${reasons.length > 0 ? ` (${reasons.join(', ')})` : ''}`,
    );
  return [...scans, ...decisions].filter(Boolean).join(', ');
}

/** One timeline event for people, without its time: what the CLI's `messages show` and the dev inbox print. */
export function describeTimelineEvent(event: TimelineEvent): string {
  switch (event.type) {
    case 'received': {
      const received = `from <${event.mailFrom}> to ${event.rcptTo.join(', ')}, ${bytes(event.size)}, client ${event.remoteAddress}${event.tls ? ' (TLS)' : ''}`;
      const filtering = event.filtering ? describeFiltering(event.filtering) : '';
      return filtering ? `${received}; ${filtering}` : received;
    }
    case 'parsed': {
      const jobs = event.jobs.map((job) => `${job.route} → ${job.endpoint}`).join(', ');
      return [
        `subject ${JSON.stringify(event.subject ?? '')}, ${event.jobs.length} delivery job(s)${jobs ? `: ${jobs}` : ''}`,
        event.unrouted.length > 0 ? `unrouted ${event.unrouted.join(', ')}` : '',
        event.warnings.length > 0 ? `warnings: ${event.warnings.join('; ')}` : '',
      ]
        .filter(Boolean)
        .join('; ');
    }
    case 'attempt':
      return `try ${event.attempt} route ${event.route} → ${event.endpoint}: ${answer(event.status)}${event.error ? ` ${event.error.class}: ${event.error.text}` : ''} in ${Math.round(event.durationMs)} ms`;
    case 'retry_scheduled':
      return `route ${event.route} → ${event.endpoint}: try ${event.attempt} at ${event.nextAttemptAt}`;
    case 'delivered':
      return `route ${event.route} → ${event.endpoint}: ${answer(event.status)}`;
    case 'dead_lettered':
      return `route ${event.route} → ${event.endpoint}: ${event.reason}, ${answer(event.status)}${event.error ? `, ${event.error}` : ''}; in the delivery DLQ`;
    case 'retried': {
      const asked = `${event.release ? 'released' : 'retried'} by ${event.by}`;
      const scope = event.route === null ? 'every route' : `route ${event.route}`;
      if (event.jobs.length > 0) return `${asked}, ${scope}: ${event.jobs.length} job(s) queued`;
      // Through parse the jobs are not known yet; an inbound DLQ entry covers its own recipients only.
      return `${asked}${event.reparse ? `, ${scope}` : ''}: sent back to parse, whose next "parsed" lists the jobs`;
    }
    case 'replayed':
      return `by ${event.by}, ${event.route === null ? 'every route' : `route ${event.route}`}`;
    case 'quarantined':
      return `route ${event.route}: held (${event.reasons.join(', ')}); release it to deliver`;
    case 'parse_failed':
      return `${event.tries} tries: ${event.error}; in the inbound DLQ`;
  }
}
