import ipaddr from 'ipaddr.js';
import leven from 'leven';
import * as z from 'zod';
import { formatConfigPath, parseDocumentText } from './config-text.ts';
import { longestRetrySeconds, MAX_ROUTE_TIMEOUT_SECONDS } from './delivery.ts';
import { parseDurationSeconds } from './duration.ts';
import { DEFAULT_DISABLE_AFTER_SECONDS } from './endpoint-health.ts';
import { ConfigError } from './errors.ts';
import {
  DnsblConfigSchema,
  RATE_LIMIT_FIELDS,
  RouteFilteringSchema,
  ScannersConfigSchema,
} from './filtering/schemas.ts';
import { QUEUE_SETTINGS } from './queues.ts';
import { ReplyMarkersSchema } from './reply-markers.ts';
import { matchIssue, type RegexEngine } from './routes.ts';

/** Where a config runs: `local` allows inline secrets and plain-http loopback endpoints; `aws` does not. */
export type Runtime = 'local' | 'aws';

const duration = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    const seconds = parseDurationSeconds(value);
    if (seconds === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `not a duration: ${JSON.stringify(value)} (use 5s, 30m, 2h, 1d)`,
      });
      return z.NEVER;
    }
    return seconds;
  })
  .meta({ description: 'A duration: seconds as a number, or a string such as "5s", "30m", "2h", "1d".' });

const domainName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(
    /^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/,
    'not a domain name',
  );

/** A secret held by reference; `value` (inline) is refused outside local runs. */
export const SecretRefSchema = z.union([
  z.strictObject({ value: z.string().min(1).meta({ description: 'The secret itself. Local runs only.' }) }),
  z.strictObject({
    env: z.string().min(1).meta({ description: 'Name of an environment variable holding it.' }),
  }),
  z.strictObject({
    secretsManager: z.string().min(1).meta({ description: 'AWS Secrets Manager secret name or ARN.' }),
    jsonKey: z
      .string()
      .optional()
      .meta({ description: 'Key inside a JSON secret; the whole string if absent.' }),
  }),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/** The default retry schedule after the first try (docs/architecture.md, "Delivery semantics"). */
export const DEFAULT_RETRY_SCHEDULE_SECONDS: readonly number[] = [5, 300, 1800, 7200, 18000, 36000, 36000];

const RouteSchema = z.strictObject({
  id: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, 'letters, digits, "_", "." and "-", at most 64')
    .meta({ description: 'Stable id of the route; part of every webhook-id it produces, so do not rename.' }),
  match: z.array(z.string().trim().min(1)).min(1).meta({
    description:
      'Addresses this route takes: an exact address, "*@domain", a glob such as "support-*@domain", or "/regex/".',
  }),
  endpoints: z
    .array(z.string().trim())
    .min(1)
    .meta({ description: 'Webhook URLs; each gets its own signed POST.' }),
  secret: z
    .union([SecretRefSchema, z.array(SecretRefSchema).min(1)])
    .transform((value) => (Array.isArray(value) ? value : [value]))
    .meta({
      description: 'Signing secret (whsec_…), or several during a key rotation: each signs every webhook.',
    }),
  attachments: z
    .strictObject({
      mode: z.enum(['inline', 'url']).default('url').meta({
        description:
          '"inline": base64 in the payload when under inlineLimitBytes; "url": always a presigned link.',
      }),
      inlineLimitBytes: z
        .number()
        .int()
        .min(0)
        .default(1_000_000)
        .meta({ description: 'Largest attachment sent inline as base64.' }),
    })
    .prefault({}),
  retrySchedule: z
    .array(duration)
    .max(50)
    .default([...DEFAULT_RETRY_SCHEDULE_SECONDS])
    .meta({
      description: 'Waits between tries after the first one; when exhausted the job goes to the DLQ.',
    }),
  timeout: duration.default(15).meta({ description: 'Per-try request timeout.' }),
  replyMarkers: ReplyMarkersSchema,
  disableAfter: duration.nullable().default(DEFAULT_DISABLE_AFTER_SECONDS).meta({
    description:
      'Disable an endpoint once every try to it has failed for this long (5 days by default; a 410 Gone disables it at once): its new jobs go straight to the delivery DLQ as "parked" until `mailbridge dlq redrive` re-enables it. null: only a 410 disables.',
  }),
  filtering: RouteFilteringSchema.meta({
    description:
      'Spam, malware and sender policy of this route, decided before the 250: what a verdict does (reject, quarantine or tag), sender allow and block lists, SPF and DMARC policy.',
  }),
});
export type Route = z.output<typeof RouteSchema>;

const ListenerSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).meta({ description: 'TCP port; 0 picks a free one.' }),
  host: z.string().default('0.0.0.0').meta({ description: 'Interface to bind.' }),
  mode: z.enum(['mx', 'submission', 'implicit-tls']).meta({
    description:
      '"mx": STARTTLS offered, no AUTH (port 25). "submission": STARTTLS then AUTH required (587, 2525). "implicit-tls": TLS from the first byte, AUTH required (465).',
  }),
});
export type ListenerConfig = z.output<typeof ListenerSchema>;

const TlsSchema = z.discriminatedUnion('source', [
  z.strictObject({ source: z.literal('self-signed') }).meta({ description: 'Made at first local start.' }),
  z.strictObject({
    source: z.literal('files'),
    certFile: z.string().meta({ description: 'PEM certificate chain file, leaf first.' }),
    keyFile: z.string().meta({ description: 'PEM private key file of the certificate.' }),
  }),
  z.strictObject({
    source: z.literal('secrets-manager'),
    secretId: z
      .string()
      .min(1)
      .meta({ description: 'Secrets Manager secret holding `{"cert", "key"}` as PEM strings.' }),
    reloadInterval: duration
      .default(3600)
      .meta({ description: 'How often the listener re-reads the secret.' }),
  }),
]);

const LimitsSchema = z
  .strictObject({
    maxMessageBytes: z
      .number()
      .int()
      .min(1024)
      .default(40 * 1024 * 1024)
      .meta({ description: 'Largest message accepted, advertised as SIZE; larger gets 552 5.3.4.' }),
    // RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
    maxRecipients: z
      .number()
      .int()
      .min(100)
      .default(100)
      .meta({ description: 'Per message; the next RCPT gets 452 4.5.3.' }),
    maxConnections: z
      .number()
      .int()
      .min(1)
      .default(1000)
      .meta({ description: 'Open sessions per process; then 421 4.7.0.' }),
    maxConnectionsPerIp: z
      .number()
      .int()
      .min(1)
      .default(20)
      .meta({ description: 'Open sessions per client address; then 421 4.7.0.' }),
    maxConnectionsPerNetwork: z.number().int().min(1).default(50).meta({
      description:
        'Open sessions per client network (the /24 of an IPv4 address, the /64 of an IPv6 one); then 421 4.7.0.',
    }),
    // RFC 5321 §4.5.3.2 suggests 5 minutes; keep below the NLB idle timeout (350 s).
    socketTimeout: duration.default(300).meta({ description: 'Idle time allowed between commands.' }),
    // A legitimate client, pipelining or not, sends its envelope within seconds; one that only
    // keeps the line alive (NOOP every few seconds) would otherwise hold a slot for ever.
    envelopeTimeout: duration.default(60).meta({
      description:
        'Time a session has, from connecting or from the end of its last message, to send the next envelope up to DATA. NOOP, RSET and other commands do not extend it; then 421 4.4.2.',
    }),
    maxIdleCommands: z.number().int().min(1).default(20).meta({
      description:
        'Commands that make no progress (any but EHLO, HELO, STARTTLS, AUTH, MAIL, RCPT, DATA and QUIT: NOOP, RSET, HELP, VRFY, unknown ones) a session may send before its first message or between two; the next gets 421 4.7.0.',
    }),
    maxUnauthenticatedCommands: z.number().int().min(3).default(10).meta({
      description:
        'Commands a client may send on a submission or implicit-TLS port before AUTH succeeds (AUTH itself not counted); the next gets 421 4.7.0.',
    }),
    // Below the ECS stop timeout (at most 120 s) so open sessions finish before SIGKILL.
    closeTimeout: duration
      .default(60)
      .meta({ description: 'On shutdown, how long open sessions may finish.' }),
    spoolMemoryBytes: z
      .number()
      .int()
      .min(5 * 1024 * 1024)
      .default(16 * 1024 * 1024)
      .meta({
        description:
          'Bytes all messages in progress may buffer together before their senders are paused (each S3 part is 5 MiB); raise it with task memory for more large-message throughput.',
      }),
    // A paused sender waits for TCP to take its data: RFC 5321 §4.5.3.2.5 gives it 3 minutes per
    // block, and smtp-server's socketTimeout still bounds a session that stalls altogether.
    spoolWait: duration.default(60).meta({
      description:
        'How long a message waits, its sender paused, for room in spoolMemoryBytes; then it takes room from younger messages, or is answered 451 4.3.1 and the sender retries later.',
    }),
    // A hung S3 or SQS call would otherwise hold the sender until its own timeout (RFC 5321
    // §4.5.3.2.6: 10 minutes after the final dot). With 3 tries each for S3 and SQS, a hang is
    // answered 451 4.3.0 within about 30 s: well inside that, and inside closeTimeout on shutdown.
    storageConnectTimeout: duration.default(3).meta({
      description: 'Time the listener allows to open a connection to S3 or SQS.',
    }),
    storageRequestTimeout: duration.default(5).meta({
      description:
        'Time the listener allows one S3 or SQS request, sending and answer included (a 5 MiB part takes well under a second within AWS). The SDK tries 3 times; then the message is answered 451 4.3.0.',
    }),
    rejectBareLf: z.boolean().default(false).meta({
      description: 'Refuse DATA with bare-LF line endings (550 5.6.0) instead of only flagging it.',
    }),
    ...RATE_LIMIT_FIELDS,
  })
  .prefault({});

/** The raw mail's lifecycle when the deployment names none (the storage settings' `rawDays` default). */
export const DEFAULT_RAW_RETENTION_DAYS = 30;

const ControlPlaneSchema = z
  .strictObject({
    tableName: z.string().min(3).max(255).default('mailbridge-control').meta({
      description:
        "DynamoDB table of the message log, refusals, API routes, domains and keys. In AWS the deployment's table (MAILBRIDGE_CONTROL_TABLE) takes its place.",
    }),
    retentionDays: z
      .number()
      .int()
      .min(1)
      .optional()
      .meta({
        description: `Days the message log keeps a message, in local runs. Default: the raw mail's lifecycle (MAILBRIDGE_CONTROL_RETENTION_DAYS; ${DEFAULT_RAW_RETENTION_DAYS} without one). Refused in AWS, where the stack's storage.rawDays sets both, so a log entry never outlives its mail.`,
      }),
    acceptUnverifiedDomains: z.boolean().default(false).meta({
      description:
        'Take mail for domains added through the API before their DNS proof is checked. Local runs only: otherwise one tenant could receive mail for a domain it does not control (550 5.7.1 until `POST /v1/domains/{name}/verify`).',
    }),
    mxHost: z.string().trim().min(1).optional().meta({
      description: 'Host name API domains publish as their MX. Default: `hostname`.',
    }),
  })
  .prefault({});

export const ConfigSchema = z.strictObject({
  version: z.literal(1).default(1).meta({ description: 'Format version of this file.' }),
  hostname: z
    .string()
    .default('localhost')
    .meta({ description: 'Name in the greeting and the Received: header.' }),
  domains: z
    .array(domainName)
    .min(1)
    .meta({ description: 'Domains we receive mail for; others get 550 5.7.1.' }),
  routes: z.array(RouteSchema).min(1).meta({ description: 'Where mail goes, by recipient address.' }),
  listeners: z.array(ListenerSchema).min(1).meta({ description: 'SMTP ports, each with its own policy.' }),
  health: z
    .strictObject({
      host: z.string().default('0.0.0.0').meta({ description: 'Interface to bind.' }),
      port: z
        .number()
        .int()
        .min(0)
        .max(65535)
        .meta({ description: 'TCP port (8080 in AWS); 0 picks a free one.' }),
    })
    .meta({ description: 'HTTP `GET /healthz` for the load balancer.' }),
  proxyProtocol: z.boolean().default(false).meta({
    description:
      'Expect a PROXY protocol v2 header first on every connection (an NLB with proxy protocol v2 on its target groups). Connections from peers outside trustedProxies, and v1 headers, are refused.',
  }),
  trustedProxies: z
    .array(
      z
        .string()
        .trim()
        .refine(
          (range) => ipaddr.isValidCIDR(range) || ipaddr.isValid(range),
          'not an IP address or CIDR range',
        ),
    )
    .default([])
    .meta({
      description:
        'Addresses or CIDR ranges (e.g. the VPC CIDR) of the load balancer whose PROXY headers are believed; required with proxyProtocol.',
    }),
  tls: TlsSchema.prefault({ source: 'self-signed' }).meta({
    description: 'Certificate and key for STARTTLS and port 465.',
  }),
  auth: z
    .strictObject({
      users: z
        .array(
          z.strictObject({
            user: z.string().min(1).meta({ description: 'User name given to AUTH PLAIN or LOGIN.' }),
            password: SecretRefSchema.meta({ description: 'Its password, by reference.' }),
          }),
        )
        .default([])
        .meta({ description: 'SMTP AUTH users of the submission and implicit-TLS ports.' }),
    })
    .prefault({}),
  limits: LimitsSchema,
  controlPlane: ControlPlaneSchema.meta({
    description: 'The control plane: its store, how long the message log is kept, API domains.',
  }),
  scanners: ScannersConfigSchema.meta({
    description:
      'Content scanners the listener streams each message to before answering DATA: rspamd (spam) and clamd (malware). Both off by default: verdicts say `unavailable`.',
  }),
  dnsbl: DnsblConfigSchema.meta({
    description: 'DNS blocklists looked up for each client address at connect.',
  }),
  dev: z
    .strictObject({
      dnsZone: z.string().trim().min(1).optional().meta({
        description:
          'DNS zone file (YAML: name → record type → values), read at start and again at the next lookup after it changes (an edit that breaks it is logged with its line, and the last good zone stays in force; parse keeps an answer up to 5 minutes), answering the SPF, DKIM, DMARC, DNSBL and domain-verification lookups of the names it holds; relative to this file. Other names go to the real DNS (offline: `temperror`). `dev/mailbridge.yaml` names `dev/auth/zone.yaml`, where mail from example.com sent by `mailbridge send --dkim` passes all three. Local runs only.',
      }),
    })
    .prefault({})
    .meta({ description: 'Settings of the local runtime only (`npm start`); refused in AWS.' }),
});
export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** 4 or 6 for an IP address literal, 0 for a name (as `net.isIP`, which would make core load sockets). */
function ipVersion(host: string): 0 | 4 | 6 {
  if (ipaddr.IPv4.isValidFourPartDecimal(host)) return 4;
  return ipaddr.IPv6.isValid(host) ? 6 : 0;
}

function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost') return true;
  if (ipVersion(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

// Names that reach a cloud's instance metadata service, or this host, without an address in the URL.
const INTERNAL_HOSTS =
  /^(?:localhost|.*\.localhost|metadata|metadata\.google\.internal|metadata\.goog|instance-data|instance-data\.ec2\.internal|metadata\.azure\.com)$/;

/**
 * Why an endpoint host may not be used in AWS, or undefined: an address that is not public unicast
 * (private, loopback, link-local, CGNAT, metadata, multicast, reserved, IPv4-mapped; the same
 * ipaddr.js ranges the connect-time guard refuses), or a well-known internal name. Other names
 * are checked on the address actually connected to, at each try.
 */
function internalHost(hostname: string): string | undefined {
  const host = hostname
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/\.$/, '');
  if (INTERNAL_HOSTS.test(host)) return `${host} is an internal name`;
  if (!ipVersion(host)) return undefined;
  const range = ipaddr.parse(host).range();
  return range === 'unicast' ? undefined : `${host} is not a public address (range ${range})`;
}

/** Checks that depend on where the config runs, each naming the field it is about. */
function runtimeIssues(config: Config, runtime: Runtime, regexes: RegexEngine): string[] {
  const issues: string[] = [];
  const routeIds = new Set<string>();
  config.routes.forEach((route, r) => {
    if (routeIds.has(route.id)) issues.push(`routes[${r}].id: duplicate route id "${route.id}"`);
    routeIds.add(route.id);
    route.endpoints.forEach((endpoint, e) => {
      const field = `routes[${r}].endpoints[${e}]`;
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        issues.push(`${field}: not a URL: ${JSON.stringify(endpoint)}`);
        return;
      }
      if (url.username || url.password) issues.push(`${field}: credentials in the URL are not allowed`);
      const loopbackHttp = url.protocol === 'http:' && runtime === 'local' && isLoopbackHost(url.hostname);
      if (url.protocol !== 'https:' && !loopbackHttp) {
        issues.push(`${field}: must be https:// (plain http:// only for loopback in local runs)`);
      }
      const internal = runtime === 'aws' ? internalHost(url.hostname) : undefined;
      if (internal) issues.push(`${field}: ${internal}; webhooks go to public endpoints only`);
    });
    if (route.timeout > MAX_ROUTE_TIMEOUT_SECONDS) {
      issues.push(
        `routes[${r}].timeout: at most ${MAX_ROUTE_TIMEOUT_SECONDS}s, so a try fits in the deliver function's ${QUEUE_SETTINGS.functionTimeoutSeconds.deliver}s`,
      );
    }
    const retention = QUEUE_SETTINGS.delivery.retentionDays * 86_400;
    if (longestRetrySeconds(route.retrySchedule) > retention) {
      let fits = 0;
      while (longestRetrySeconds(Array.from({ length: fits + 1 }, () => 0)) <= retention) fits++;
      issues.push(
        `routes[${r}].retrySchedule: ${route.retrySchedule.length} retries can outlive the delivery queue's ${QUEUE_SETTINGS.delivery.retentionDays}-day retention (each wait may be stretched to ~12 h by Retry-After), and the job would expire without a DLQ entry; use at most ${fits}`,
      );
    }
    route.match.forEach((pattern, m) => {
      const issue = matchIssue(pattern, regexes);
      if (issue) issues.push(`routes[${r}].match[${m}]: ${issue}`);
    });
    if (runtime === 'aws') {
      route.secret.forEach((ref, s) => {
        if ('value' in ref) issues.push(`routes[${r}].secret[${s}]: inline secrets are for local runs only`);
      });
    }
    route.secret.forEach((ref, s) => {
      if ('value' in ref && !ref.value.startsWith('whsec_')) {
        issues.push(`routes[${r}].secret[${s}].value: a signing secret starts with "whsec_"`);
      }
    });
  });
  if (runtime === 'aws') {
    config.auth.users.forEach((user, u) => {
      if ('value' in user.password)
        issues.push(`auth.users[${u}].password: inline secrets are for local runs only`);
    });
    if (config.tls.source === 'self-signed') issues.push('tls.source: self-signed is for local runs only');
    if (config.controlPlane.acceptUnverifiedDomains) {
      issues.push(
        'controlPlane.acceptUnverifiedDomains: local runs only; in AWS a domain takes mail once its DNS proof is checked',
      );
    }
    // One setting keeps the log and the raw mail it links to for the same days in AWS: the
    // stack's storage.rawDays sets both (the bucket's lifecycle and every part's retention).
    if (config.controlPlane.retentionDays !== undefined) {
      issues.push(
        "controlPlane.retentionDays: local runs only; in AWS the log keeps a message as long as its raw mail, the stack's storage.rawDays",
      );
    }
    // Refused rather than ignored: a deployed config naming a zone would be trusted to give the
    // verdicts its author saw locally, while the functions ask the real DNS.
    if (config.dev.dnsZone !== undefined) {
      issues.push(
        'dev.dnsZone: local runs only; in AWS, SPF, DKIM and DMARC are checked against the real DNS',
      );
    }
  }
  const needsAuth = config.listeners.some((listener) => listener.mode !== 'mx');
  if (needsAuth && config.auth.users.length === 0) {
    issues.push('auth.users: submission and implicit-tls listeners need at least one user');
  }
  if (config.proxyProtocol && config.trustedProxies.length === 0) {
    issues.push(
      'trustedProxies: proxyProtocol needs the load balancer addresses or VPC CIDR ranges whose PROXY headers are believed',
    );
  }
  const ports = new Set<number>();
  config.listeners.forEach((listener, l) => {
    if (listener.port !== 0 && ports.has(listener.port))
      issues.push(`listeners[${l}].port: ${listener.port} used twice`);
    ports.add(listener.port);
  });
  return issues;
}

/** The part of the config schema at `path`, through defaults, arrays and unions; undefined if none. */
function schemaAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): z.core.$ZodType | undefined {
  const def = schema._zod.def as z.core.$ZodTypeDef & {
    innerType?: z.core.$ZodType;
    in?: z.core.$ZodType;
    element?: z.core.$ZodType;
    shape?: Record<string, z.core.$ZodType>;
    options?: z.core.$ZodType[];
  };
  if (def.innerType) return schemaAt(def.innerType, path);
  if (def.type === 'pipe' && def.in) return schemaAt(def.in, path);
  if (path.length === 0) return schema;
  const [key, ...rest] = path;
  if (def.type === 'union' && def.options) {
    for (const option of def.options) {
      const found = schemaAt(option, path);
      if (found) return found;
    }
    return undefined;
  }
  if (def.type === 'array' && def.element && typeof key === 'number') return schemaAt(def.element, rest);
  if (def.type === 'object' && def.shape && typeof key === 'string' && key in def.shape) {
    return schemaAt(def.shape[key]!, rest);
  }
  return undefined;
}

/** The known key closest to a misspelt one (`endpoint` → `endpoints`), if one is close. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = leven(key.toLowerCase(), candidate.toLowerCase());
    if (distance <= Math.max(2, Math.floor(candidate.length / 3)) && (!best || distance < best.distance)) {
      best = { key: candidate, distance };
    }
  }
  return best?.key;
}

const SECRET_FORMS =
  'a secret is one of { value: "…" } (the secret itself, local runs only), { env: "VARIABLE_NAME" }, { secretsManager: "name or ARN", jsonKey?: "key" }';

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * One line per schema issue, by the field's path, in words a person editing the file can act on:
 * the three forms of a secret reference, "did you mean" for a misspelt key.
 */
function describeIssue(issue: z.core.$ZodIssue, document: unknown): string[] {
  const at = formatConfigPath(issue.path) || '(root)';
  if (issue.code === 'unrecognized_keys') {
    const shape = (schemaAt(ConfigSchema, issue.path)?._zod.def as { shape?: object } | undefined)?.shape;
    const known = Object.keys(shape ?? {});
    return issue.keys.map((key) => {
      const close = closestKey(key, known);
      return `${at}: unknown key "${key}"${close ? `; did you mean "${close}"?` : ''}`;
    });
  }
  if (issue.code === 'invalid_union') {
    const schema = schemaAt(ConfigSchema, issue.path);
    // A secret reference, described (a copy of SecretRefSchema with the same forms) or not, or a
    // union of one and a list of them.
    const forms = (candidate: unknown) =>
      (candidate as z.core.$ZodType | undefined)?._zod.def.type === 'union' &&
      (candidate as { _zod: { def: { options: unknown[] } } })._zod.def.options[0] ===
        SecretRefSchema.options[0];
    const options = (schema?._zod.def as { options?: unknown[] } | undefined)?.options ?? [];
    const single = forms(schema);
    if (single || options.some(forms)) {
      const value = issue.path.reduce<unknown>(
        (node, key) =>
          node !== null && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[key] : undefined,
        document,
      );
      const list = single ? '' : ', or a list of them';
      return [`${at}: ${SECRET_FORMS}${list}; got ${kindOf(value)}`];
    }
  }
  return [`${at}: ${issue.message}`];
}

/**
 * Validates a parsed config document. Throws a {@link ConfigError} listing every bad field by
 * its path (`routes[2].endpoints[0]: …`), so a bad file fails at start and says where.
 * `regexEngine` is what will run its routes' `/regex/` patterns: JavaScript's for a config file
 * (the default), RE2 for a route made through the API.
 */
export function parseConfig(
  document: unknown,
  options: { source: string; runtime: Runtime; regexEngine?: RegexEngine },
): Config {
  const result = ConfigSchema.safeParse(document);
  if (!result.success) {
    throw new ConfigError(
      options.source,
      result.error.issues.flatMap((issue) => describeIssue(issue, document)),
    );
  }
  const issues = runtimeIssues(result.data, options.runtime, options.regexEngine ?? 'js');
  if (issues.length > 0) throw new ConfigError(options.source, issues);
  return result.data;
}

/** Parses config text: JSON when it looks like JSON or the name ends in .json, YAML otherwise. */
export function parseConfigText(text: string, options: { source: string; runtime: Runtime }): Config {
  return parseConfig(parseDocumentText(text, options.source), options);
}

/** Reads an object's text from S3; implemented by the AWS adapters. */
export type S3TextReader = (bucket: string, key: string) => Promise<string>;

/** Where {@link loadConfig} reads from; `configReaders` in core/aws implements both. */
export interface ConfigReaders {
  /** Reads a file's text (UTF-8). */
  readonly file: (path: string) => Promise<string>;
  /** Reads `s3://` sources; absent in a runtime without an S3 client. */
  readonly s3Text?: S3TextReader;
}

/**
 * Reads and validates the config from a file path or an `s3://bucket/key` URL (where CDK deploys
 * it, so routes change without rebuilding the image).
 */
export async function loadConfig(source: string, runtime: Runtime, readers: ConfigReaders): Promise<Config> {
  let text: string;
  try {
    const s3 = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
    if (s3) {
      if (!readers.s3Text) throw new Error('no S3 client in this runtime');
      text = await readers.s3Text(s3[1]!, s3[2]!);
    } else {
      text = await readers.file(source);
    }
  } catch (error) {
    throw new ConfigError(source, [`(file): cannot read: ${(error as Error).message}`], { cause: error });
  }
  return parseConfigText(text, { source, runtime });
}

/** JSON Schema of the config file, generated from the same source as the types. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(ConfigSchema, {
    io: 'input',
    unrepresentable: 'any',
    // Defaults of transformed fields (durations) are dropped from the input schema; put them back.
    override: (ctx) => {
      const def = ctx.zodSchema._zod.def as { type: string; defaultValue?: unknown };
      if (def.type === 'default' && ctx.jsonSchema.default === undefined)
        ctx.jsonSchema.default = def.defaultValue;
    },
  }) as Record<string, unknown>;
}
