import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { configReaders, s3Presigner } from '../core/aws/index.ts';
import {
  type ApiRequest,
  type ApiResponse,
  type ControlStore,
  createApiHandler,
  dynamoControlStore,
  ensureControlTable,
  findApiKey,
  localSigningSecretStore,
  newApiKey,
  pipelineRoute,
} from '../core/control/index.ts';
import {
  type Config,
  controlPlaneSettings,
  createMetrics,
  type ListenerConfig,
  type Logger,
  loadConfig,
  MailbridgeError,
  routeSecretsResolver,
} from '../core/index.ts';
import {
  boundedResolver,
  type DnsResolver,
  inboundRetryPort,
  systemResolver,
  zoneFileResolver,
} from '../functions/index.ts';
import {
  generateSelfSigned,
  loadTlsMaterial,
  type RunningListener,
  resolveAuthUsers,
  startListener,
  type TlsMaterial,
} from '../listener/index.ts';
import { startApiServer } from './api-server.ts';
import { type ConsoleSink, runtimeLoggers } from './console.ts';
import { type LocalDynamo, localDynamoClient, startLocalDynamo } from './dynamo.ts';
import { type Emulator, startEmulator } from './emulator.ts';
import { startLocalFunctions } from './handlers.ts';
import { type Inbox, s3RawReader, startInbox } from './inbox.ts';
import { messageEventsFile } from './message-events.ts';
import type { Poller } from './poller.ts';
import { emulatorClients, type LocalResources, provisionLocalResources } from './resources.ts';
import { PORT_VARIABLES, recordRunningRuntime } from './runtime-state.ts';

// The local default config, used when no other file is given.
const DEFAULT_CONFIG_FILE = join(import.meta.dirname, 'mailbridge.yaml');

/** The dev inbox's address in the default config (docs/architecture.md, "The local runtime"). */
const DEFAULT_INBOX_ORIGINS = ['http://127.0.0.1:8025', 'http://localhost:8025'];
const DEFAULT_INBOX_PORT = 8025;
const DEFAULT_EMULATOR_PORT = 4566;
const DEFAULT_API_PORT = 8027;
/** Where the control plane's store and the dev API key live, under the data folder. */
const CONTROL_DIR = 'control';
const DEV_KEY_FILE = 'dev-key';
/** How long the API's links to raw messages work; the emulator's credentials never expire. */
const RAW_LINK_SECONDS = 15 * 60;

/** Ports that replace the config's; 0 picks a free one. */
export interface LocalPorts {
  /** Listeners in `mx` mode. */
  smtp?: number;
  /** Listeners in `submission` mode. */
  submission?: number;
  /** Listeners in `implicit-tls` mode. */
  smtps?: number;
  /** @default 8025 */
  inbox?: number;
  /** The listener's health endpoint. */
  health?: number;
  /** The S3 + SQS emulator. @default 4566 */
  emulator?: number;
  /** The control plane API. @default 8027 */
  api?: number;
}

const PORT_LABELS: Readonly<Record<keyof LocalPorts, string>> = {
  smtp: 'SMTP, MX-style',
  submission: 'submission',
  smtps: 'implicit TLS',
  inbox: 'dev inbox',
  health: 'listener health',
  emulator: 'S3 + SQS emulator',
  api: 'control plane API',
};

const PORT_OF_MODE: Readonly<Record<ListenerConfig['mode'], keyof LocalPorts>> = {
  mx: 'smtp',
  submission: 'submission',
  'implicit-tls': 'smtps',
};

/** Some of the runtime's ports cannot be bound; the message names each with its variable. */
export class PortsInUseError extends MailbridgeError {
  override name = 'PortsInUseError';
  constructor(taken: readonly { host: string; port: number; use: keyof LocalPorts; code: string }[]) {
    const lines = taken.map(
      ({ host, port, use, code }) =>
        `  ${host}:${port} (${PORT_LABELS[use]}, ${PORT_VARIABLES[use]}): ${code === 'EADDRINUSE' ? 'in use' : code}`,
    );
    super(
      [
        'cannot start: ports taken (is another `mailbridge dev` running?)',
        ...lines,
        'Stop the other one, or set these variables to free ports (0 picks any).',
      ].join('\n'),
    );
  }
}

/** Why `port` cannot be bound on `host` (`EADDRINUSE`, `EACCES`…), or undefined when it can. */
function bindError(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

/** Checks every fixed port before anything starts, so that one message names all the taken ones. */
async function checkPorts(config: Config, ports: LocalPorts): Promise<void> {
  const wanted = [
    ...config.listeners.map((listener) => ({
      host: listener.host,
      port: listener.port,
      use: PORT_OF_MODE[listener.mode],
    })),
    { host: config.health.host, port: config.health.port, use: 'health' as const },
    { host: '127.0.0.1', port: ports.inbox ?? DEFAULT_INBOX_PORT, use: 'inbox' as const },
    { host: '127.0.0.1', port: ports.emulator ?? DEFAULT_EMULATOR_PORT, use: 'emulator' as const },
    { host: '127.0.0.1', port: ports.api ?? DEFAULT_API_PORT, use: 'api' as const },
  ].filter((entry) => entry.port !== 0);
  const checked = await Promise.all(
    wanted.map(async (entry) => ({ ...entry, code: await bindError(entry.host, entry.port) })),
  );
  const taken = checked.flatMap(({ code, ...entry }) => (code ? [{ ...entry, code }] : []));
  if (taken.length > 0) throw new PortsInUseError(taken);
}

export interface LocalRuntimeOptions {
  /** Config file (JSON or YAML), validated for the `local` runtime. @default dev/mailbridge.yaml */
  configFile?: string;
  /** Emulator SQLite folder (objects, queues) and the self-signed TLS pair. @default in memory */
  dataDir?: string;
  ports?: LocalPorts;
  /**
   * DNS for SPF/DKIM/DMARC in the parse function, the listener's DNSBL and SPF, and API domain
   * verification; the config's `dev.dnsZone` answers first. @default the system resolver
   */
  resolver?: DnsResolver;
  /** Long-poll wait of the pollers; stopping may take this long. @default 2 */
  pollWaitSeconds?: number;
  /**
   * What the parts' logs print: the JSON lines of AWS (`json: true`), or one human line per
   * accepted, delivered, retried or failed message and per warning. With a `dataDir` the message
   * events are also recorded there for `mailbridge tail`. @default JSON lines
   */
  console?: Pick<ConsoleSink, 'json' | 'print'>;
}

/** The control plane API of a local runtime. */
export interface LocalApi {
  /** `http://127.0.0.1:8027`; the API is under `/v1`. */
  readonly url: string;
  /** The full-scope dev key (`mbk_…`), made once per data folder. */
  readonly key: string;
  /** Where the dev key is kept, with a data folder. */
  readonly keyFile: string | undefined;
}

/** A running local pipeline: emulator, listener, both functions behind pollers, dev inbox, API. */
export interface LocalRuntime {
  /** The config in effect, with port overrides applied and dev-inbox endpoints pointing at it. */
  readonly config: Config;
  /** Where objects and queues are kept, or undefined when in memory. */
  readonly dataDir: string | undefined;
  readonly emulator: Emulator;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly resources: LocalResources;
  /** The embedded DynamoDB-compatible store (`<dataDir>/control`) and the control plane on it. */
  readonly dynamo: LocalDynamo;
  readonly controlStore: ControlStore;
  readonly api: LocalApi;
  readonly listener: RunningListener;
  readonly inbox: Inbox;
  readonly pollers: { readonly inbound: Poller; readonly delivery: Poller };
  /** The first SMTP AUTH user, with its password. */
  readonly authUser: { readonly user: string; readonly password: string } | undefined;
  /** Signing secrets of the routes that deliver to the dev inbox. */
  readonly signingSecrets: readonly string[];
  /** Where message events are recorded (JSON lines), with a `dataDir`. */
  readonly eventsFile: string | undefined;
  /** The DNS zone file of the config's `dev.dnsZone`, when it names one. */
  readonly dnsZoneFile: string | undefined;
  /** Stops the listener gracefully, drains both pollers, closes the inbox and the emulator. */
  close(): Promise<void>;
}

/** The config with the port overrides applied. */
function withPorts(config: Config, ports: LocalPorts): Config {
  return {
    ...config,
    listeners: config.listeners.map((listener) => ({
      ...listener,
      port: ports[PORT_OF_MODE[listener.mode]] ?? listener.port,
    })),
    health: { ...config.health, port: ports.health ?? config.health.port },
  };
}

/** The config with its dev-inbox endpoints on the inbox actually running. */
function withInbox(config: Config, inboxUrl: string): Config {
  const toInbox = (endpoint: string) => {
    const origin = DEFAULT_INBOX_ORIGINS.find((candidate) => endpoint.startsWith(`${candidate}/`));
    return origin ? inboxUrl + endpoint.slice(origin.length) : endpoint;
  };
  return {
    ...config,
    routes: config.routes.map((route) => ({ ...route, endpoints: route.endpoints.map(toInbox) })),
  };
}

async function tlsMaterial(config: Config, dataDir: string | undefined): Promise<TlsMaterial> {
  // A run without a dataDir keeps nothing on disk, so its self-signed pair lives for this run only.
  if (dataDir === undefined && config.tls.source === 'self-signed')
    return generateSelfSigned(config.hostname);
  return loadTlsMaterial(config, { runtime: 'local', dataDir: dataDir ?? process.cwd() });
}

/**
 * The runtime's DNS: the zone file of `dev.dnsZone` (relative to the config file) answers the names
 * it has, and is read again when it changes, so a domain's TXT proof added to it verifies without a
 * restart; other names go to `fallback`, the system's DNS unless given (offline, that is `temperror`).
 * An edit that breaks the file is logged, naming the line, and the last good zone stays in force.
 */
async function localResolver(
  config: Config,
  configFile: string,
  fallback: DnsResolver | undefined,
  logger: Logger,
): Promise<{ resolver: DnsResolver | undefined; zoneFile: string | undefined }> {
  if (config.dev.dnsZone === undefined) return { resolver: fallback, zoneFile: undefined };
  const zoneFile = resolve(dirname(configFile), config.dev.dnsZone);
  const resolver = await zoneFileResolver(zoneFile, {
    source: `${zoneFile} (dev.dnsZone of ${configFile})`,
    fallback: fallback ?? boundedResolver(systemResolver()),
    onError: (error) => logger.warn('zone file not reloaded, the last good zone answers', { error }),
  });
  return { resolver, zoneFile };
}

/**
 * The full-scope dev key: the one kept in `<control>/dev-key` while the store still knows it, else a
 * new one (first start, or a store wiped since). Without a data folder, a key for this run only.
 */
async function devKey(store: ControlStore, controlDir: string | undefined): Promise<LocalApi['key']> {
  const file = controlDir && join(controlDir, DEV_KEY_FILE);
  if (file) {
    const kept = await readFile(file, 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    if (kept && (await findApiKey(store, kept))) return kept;
  }
  const { secret, stored } = newApiKey('dev', 'full', new Date());
  await store.createKey(stored);
  // Mode 0600: whoever reads it may change every route.
  if (file) await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/**
 * Starts the whole pipeline in this process, as `npm start` runs it: the emulator, bucket and
 * queues, the dev inbox, the listener, and the parse and deliver functions each driven by a
 * Lambda-style poller. A bad config throws a `ConfigError` naming the field before anything listens.
 */
export async function startLocalRuntime(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
  const ports = options.ports ?? {};
  const configFile = resolve(options.configFile ?? DEFAULT_CONFIG_FILE);
  const loaded = withPorts(await loadConfig(configFile, 'local', configReaders()), ports);
  // Config routes resolve now, so a missing secret stops the start; API routes at their first try.
  const routeSecrets = routeSecretsResolver();
  const secretsByRoute = await Promise.all(loaded.routes.map(routeSecrets));
  const control = controlPlaneSettings(loaded);
  const authUsers = await resolveAuthUsers(loaded);
  const eventsFile = options.dataDir ? messageEventsFile(options.dataDir) : undefined;
  const loggers = runtimeLoggers({
    json: options.console?.json ?? true,
    ...(options.console?.print ? { print: options.console.print } : {}),
    ...(eventsFile ? { eventsFile } : {}),
  });
  const { resolver, zoneFile: dnsZoneFile } = await localResolver(
    loaded,
    configFile,
    options.resolver,
    loggers('dns'),
  );
  await checkPorts(loaded, ports);
  const tls = await tlsMaterial(loaded, options.dataDir);

  // Undone in reverse: listener first (no new mail), pollers drained, then inbox and emulator.
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | undefined;
  const cleanup = () => {
    closing ??= (async () => {
      for (const step of cleanups.reverse()) await step();
    })();
    return closing;
  };
  try {
    const emulator = await startEmulator({
      port: ports.emulator ?? DEFAULT_EMULATOR_PORT,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    });
    cleanups.push(() => emulator.close());
    const { s3, sqs } = emulatorClients(emulator.endpoint);
    cleanups.push(async () => {
      s3.destroy();
      sqs.destroy();
    });
    const resources = await provisionLocalResources({ s3, sqs });

    const controlDir = options.dataDir && join(options.dataDir, CONTROL_DIR);
    if (controlDir) await mkdir(controlDir, { recursive: true, mode: 0o700 });
    const dynamo = await startLocalDynamo(controlDir ? { dataDir: controlDir } : {});
    cleanups.push(() => dynamo.close());
    const dynamodb = localDynamoClient(dynamo.endpoint);
    cleanups.push(async () => dynamodb.destroy());
    await ensureControlTable(dynamodb, control.tableName);
    const controlStore = dynamoControlStore(dynamodb, control.tableName, {
      retentionDays: control.retentionDays,
    });

    const inboxRoutes = loaded.routes.flatMap((route, r) =>
      route.endpoints.some((endpoint) =>
        DEFAULT_INBOX_ORIGINS.some((origin) => endpoint.startsWith(`${origin}/`)),
      )
        ? [r]
        : [],
    );
    const signingSecrets = [...new Set(inboxRoutes.flatMap((r) => secretsByRoute[r]!))];
    // The API is bound before the inbox, whose message pages read the log through it; its handler
    // needs the config with the inbox's address, so it is set once that is known.
    let handleApi: ((request: ApiRequest) => Promise<ApiResponse>) | undefined;
    const apiServer = await startApiServer((request) => handleApi!(request), {
      host: '127.0.0.1',
      port: ports.api ?? DEFAULT_API_PORT,
    });
    cleanups.push(() => apiServer.close());
    const api: LocalApi = {
      url: apiServer.url,
      key: await devKey(controlStore, controlDir),
      keyFile: controlDir && join(controlDir, DEV_KEY_FILE),
    };
    const inbox = await startInbox({
      host: '127.0.0.1',
      port: ports.inbox ?? DEFAULT_INBOX_PORT,
      secrets: signingSecrets,
      routeSecrets: async (routeId) => {
        const stored = await controlStore.getRoute(routeId);
        return stored ? routeSecrets(pipelineRoute(stored, new Date())) : [];
      },
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      readRaw: s3RawReader(s3, resources.bucket),
      api: { url: api.url, key: api.key },
    });
    cleanups.push(() => inbox.close());
    const config = withInbox(loaded, inbox.url);

    const pollers = await startLocalFunctions({
      s3,
      sqs,
      resources,
      config,
      controlStore,
      // API routes keep their secrets in the route itself (the local SigningSecretStore).
      secrets: routeSecrets,
      waitTimeSeconds: options.pollWaitSeconds ?? 2,
      loggers,
      ...(resolver ? { resolver } : {}),
    });
    cleanups.push(() => pollers.stop());

    const listener = await startListener({
      config,
      s3,
      sqs,
      bucket: resources.bucket,
      inboundQueueUrl: resources.inboundQueueUrl,
      tls,
      authUsers,
      logger: loggers('listener'),
      metrics: createMetrics('listener'),
      control: { store: controlStore, acceptUnverifiedDomains: control.acceptUnverifiedDomains },
      ...(resolver ? { resolver } : {}),
    });
    cleanups.push(() => listener.close());

    const presign = s3Presigner(s3, { expiresInSeconds: RAW_LINK_SECONDS });
    handleApi = createApiHandler({
      store: controlStore,
      config,
      runtime: 'local',
      mxHost: control.mxHost,
      resolver: resolver ?? boundedResolver(systemResolver()),
      secrets: localSigningSecretStore,
      retry: inboundRetryPort({
        store: controlStore,
        s3,
        sqs,
        inboundQueueUrl: resources.inboundQueueUrl,
      }),
      presign: (raw) => presign(raw.bucket, raw.key),
      logger: loggers('api'),
    });
    if (options.dataDir) {
      cleanups.push(
        await recordRunningRuntime(options.dataDir, {
          configFile,
          config,
          emulator: emulator.endpoint,
          inbox: inbox.url,
          eventsFile: eventsFile!,
          api: { url: api.url, keyFile: api.keyFile! },
          control: { endpoint: dynamo.endpoint, table: control.tableName },
        }),
      );
    }
    const [firstUser] = authUsers;

    return {
      config,
      dataDir: options.dataDir,
      emulator,
      s3,
      sqs,
      resources,
      dynamo,
      controlStore,
      api,
      listener,
      inbox,
      pollers,
      authUser: firstUser && { user: firstUser[0], password: firstUser[1] },
      signingSecrets,
      eventsFile,
      dnsZoneFile,
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** The banner line of the content scanners: those in use, or how to turn them on. */
function describeScanners({ rspamd, clamd }: Config['scanners']): string {
  if (!rspamd && !clamd)
    return 'content scanners: off, verdicts "unavailable" (to scan, run rspamd and clamd and set scanners.rspamd and scanners.clamd in the config: docs/operations.md)';
  const used = [rspamd && `rspamd ${rspamd.url}`, clamd && `clamd ${clamd.host}:${clamd.port}`];
  return `content scanners: ${used.filter(Boolean).join(', ')}`;
}

const MODE_LABELS: Record<ListenerConfig['mode'], string> = {
  mx: 'SMTP, MX-style (STARTTLS offered, no AUTH)',
  submission: 'submission (STARTTLS then AUTH)',
  'implicit-tls': 'implicit TLS (AUTH)',
};

/**
 * The start banner: one line per endpoint of the local table (docs/architecture.md, "The local
 * runtime") with the addresses actually bound, the local credentials, the signing secret, and where
 * to look at stored mail and queues.
 */
export function describeRuntime(runtime: LocalRuntime): string[] {
  const { emulator, resources, inbox, config, dataDir } = runtime;
  const lines = runtime.listener.listeners.map(
    (address) => `${MODE_LABELS[address.mode]}: ${address.host}:${address.port}`,
  );
  lines.push(
    `dev inbox page: ${inbox.url}/`,
    `dev inbox API: GET ${inbox.url}/api/webhooks`,
    `listener health: GET http://${config.health.host}:${runtime.listener.healthPort}/healthz`,
    `API: ${runtime.api.url}/v1`,
    `API key: ${runtime.api.key}`,
  );
  if (runtime.authUser) {
    lines.push(`SMTP AUTH user: ${runtime.authUser.user} password: ${runtime.authUser.password}`);
  }
  for (const secret of runtime.signingSecrets) lines.push(`signing secret: ${secret}`);
  lines.push(
    runtime.dnsZoneFile
      ? `sender auth DNS: ${relative(process.cwd(), runtime.dnsZoneFile)} for the names it has (read again when it changes), the system's for the rest (offline: temperror)`
      : "sender auth DNS: the system's (offline: temperror; dev.dnsZone in the config names a local zone file)",
    describeScanners(config.scanners),
  );
  const { endpoint } = emulator;
  const queues = [
    resources.inboundQueueUrl,
    resources.inboundDlqUrl,
    resources.deliveryQueueUrl,
    resources.deliveryDlqUrl,
  ].map((url) => url.slice(url.lastIndexOf('/') + 1));
  lines.push(
    `stored mail: GET ${endpoint}/${resources.bucket}?list-type=2 lists the objects, ` +
      `GET ${endpoint}/${resources.bucket}/<key> reads one (AWS CLI: --endpoint-url ${endpoint})`,
    `queues: GET ${endpoint}/_fauxqs/queues/<name> shows the messages (${queues.join(', ')}); ` +
      `kept in ${dataDir ? join(dataDir, 'fauxqs.db') : 'memory only'}`,
  );
  return lines;
}
