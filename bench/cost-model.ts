/**
 * What mailbridge costs on AWS, computed from the bench's measured inputs (bench/cost.ts) and the
 * list prices below. `npm run bench` prints the per-million line; bench/cost-doc.ts writes
 * docs/cost.md from the same functions, so the page cannot drift from the figures.
 */
import { ROUTE_SYNC_DEFAULTS } from '../core/control/route-sync.ts';
import { fargateTaskSize } from '../infra/fargate.ts';
import type { CostMeasurement, CostRun } from './cost.ts';

/** Where and when the prices were read. */
export const PRICES_AS_OF = 'us-east-1 list prices as assumed in November 2026';

/** List prices, us-east-1, USD. */
export const PRICES = {
  nlbHour: 0.0225,
  nlbLcuHour: 0.006,
  fargateVcpuHourArm: 0.03238,
  fargateGbHourArm: 0.00356,
  publicIpv4Hour: 0.005,
  containerInsightsPerMetric: 0.3,
  alarmMetric: 0.1,
  dashboard: 3,
  customMetric: 0.3,
  secret: 0.4,
  kmsKey: 1,
  sqsPerMillion: 0.4,
  s3PutPer1000: 0.005,
  s3GetPer1000: 0.0004,
  s3GbMonth: 0.023,
  lambdaGbSecondArm: 0.0000133334,
  lambdaPerMillion: 0.2,
  dataOutGb: 0.09,
  crossAzGb: 0.01,
  logsIngestGb: 0.5,
  logsGbMonth: 0.03,
  dynamoWritePerMillion: 0.625,
  dynamoReadPerMillion: 0.125,
  dynamoGbMonth: 0.25,
  dynamoPitrGbMonth: 0.2,
  flowLogsGb: 0.25,
} as const;

const HOURS = 730;
const GB = 1e9;

/**
 * What the bench does not measure, with where each figure comes from. Every other input is the
 * bench's own.
 */
export const DECLARED = {
  /**
   * Lambda's own log lines per invocation: none at the functions' system log level WARN
   * (infra/functions.ts), which drops START, END and REPORT (about 1000 B in JSON format).
   */
  platformLogBytesPerInvocation: 0,
  /** The customer's endpoint answering a webhook: deliver waits for it. Not ours to measure. */
  endpointMs: 100,
  /** Retention of stored mail and payloads, days. */
  retentionDays: 30,
  /** Bytes on the wire per SMTP session beyond the message: dialogue and a TLS handshake. */
  smtpOverheadBytes: 5000,
  /** An API route's item in the control table: 100,000 routes are ≈ 50 MB (docs/control-plane.md). */
  routeItemBytes: 500,
} as const;

/**
 * The default deployment: what the fixed cost counts. The task size is the settings' default, which
 * {@link chooseTaskSize} picks from the bench's measurement (test/bench/cost-doc.test.ts holds them
 * equal); the alarm metric count is what the synthesized alarms read (test/infra/stack.test.ts).
 */
export const DEPLOYMENT = {
  tasks: 2,
  taskVcpu: 0.25,
  taskGb: 1,
  elasticIps: 2,
  alarmMetrics: 40,
  dashboards: 1,
  /**
   * EMF series a normal month emits (each billed by the hour it is emitted): the listener's
   * connections, accepted, bytes, session_usage and rejected by ~3 reasons; parse's
   * messages_parsed and deliveries_queued; deliver's delivered and delivery_latency; failure
   * counters only in the hours they fire.
   */
  customMetrics: 12,
  secrets: 3,
  kmsKeys: 1,
  /** Empty long polls: 5 pollers × 2 queues × 3 a minute, and readiness probes (1 per 5 s per task). */
  idleSqsRequestsPerMonth: 5 * 2 * 3 * 60 * HOURS + (2 * HOURS * 3600) / 5,
} as const;

/**
 * DynamoDB read units (on demand) of an eventually consistent Query: half a unit per 4 KB of the
 * items it returns, rounded up, and half a unit when it returns none (DynamoDB Developer Guide,
 * "Read request units and write request units").
 */
function queryReadUnits(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 4096)) / 2;
}

/**
 * Read units of one full reload: every route (`routes` API routes) and the domains. Route sync reads
 * the routes in pages of 250, each rounded up on its own; counted here as one Query, which the
 * rounding exceeds by under 2 % (half a unit per page at most).
 */
export function reloadReadUnits(routes: number): number {
  return queryReadUnits(routes * DECLARED.routeItemBytes) + queryReadUnits(0);
}

/**
 * Monthly read units that keep one listener task's RCPT index in step with the table, with
 * `routes` API routes (core/control/route-sync.ts): every poll interval a Query of the change feed
 * (empty when nothing changed), and every full-reload interval a full reload in place of that poll.
 */
export function routeSyncReadUnits(routes: number): number {
  const { pollIntervalMs, fullReloadIntervalMs } = ROUTE_SYNC_DEFAULTS;
  const month = HOURS * 3600 * 1000;
  const reloads = month / fullReloadIntervalMs;
  const polls = month / pollIntervalMs - reloads;
  return polls * queryReadUnits(0) + reloads * reloadReadUnits(routes);
}

/** The fixed line of {@link routeSyncReadUnits} for every listener task. */
export function routeSyncLine(routes: number, d: Pick<typeof DEPLOYMENT, 'tasks'> = DEPLOYMENT): CostLine {
  const units = d.tasks * routeSyncReadUnits(routes);
  const { pollIntervalMs, fullReloadIntervalMs } = ROUTE_SYNC_DEFAULTS;
  return {
    item: `Route sync reads (DynamoDB on demand), ${routes.toLocaleString('en-US')} API routes`,
    basis: `${d.tasks} tasks × change feed every ${pollIntervalMs / 1000} s + full reload every ${fullReloadIntervalMs / 60_000} min: ${(units / 1e6).toFixed(2)} M read units`,
    usd: (units / 1e6) * PRICES.dynamoReadPerMillion,
  };
}

/** Off by default, each a setting: what they add when turned on. */
export const OPTIONAL = {
  /** `listener.containerInsights`: ≈ 25 metrics for one service of 2 tasks. */
  containerInsightsMetrics: 25,
  /** `vpc.flowLogs`: rejected traffic of an MX host, scanned from the internet all day. */
  flowLogGbPerMonth: 4,
} as const;

/** Monthly cost of each optional item when turned on. */
export function optionalMonthly(o: typeof OPTIONAL = OPTIONAL): {
  containerInsights: number;
  flowLogs: number;
} {
  return {
    containerInsights: o.containerInsightsMetrics * PRICES.containerInsightsPerMetric,
    flowLogs: o.flowLogGbPerMonth * (PRICES.flowLogsGb + 3 * PRICES.s3GbMonth),
  };
}

/** CPU a task may use at the target load: one task carries it all when the other AZ is lost. */
export const TASK_CPU_HEADROOM = 0.8;
/** Memory the burst's peak may fill: a 50 MB message and open sessions come on top. */
export const TASK_MEMORY_HEADROOM = 0.5;

/**
 * The smallest (cheapest) Fargate size whose CPU share holds the listener's measured CPU at the
 * target load within {@link TASK_CPU_HEADROOM}, and whose memory holds the measured burst peak
 * within {@link TASK_MEMORY_HEADROOM}.
 */
export function chooseTaskSize(measured: { cpuPercent: number; burstPeakMiB: number }): {
  cpu: number;
  memoryMiB: number;
} {
  return fargateTaskSize(
    cpuUnitsFor(measured.cpuPercent / 100),
    measured.burstPeakMiB / TASK_MEMORY_HEADROOM,
  );
}

/** Fargate CPU units that hold `cores` (as measured at the target load) within {@link TASK_CPU_HEADROOM}. */
export function cpuUnitsFor(cores: number): number {
  return Math.ceil((cores * 1024) / TASK_CPU_HEADROOM);
}

export interface CostLine {
  readonly item: string;
  readonly basis: string;
  readonly usd: number;
}

/** Fixed monthly cost of a deployment, line by line. */
export function fixedMonthly(d: typeof DEPLOYMENT = DEPLOYMENT): CostLine[] {
  return [
    { item: 'Network Load Balancer, hours', basis: `${HOURS} h`, usd: PRICES.nlbHour * HOURS },
    {
      item: 'Fargate arm64 vCPU',
      basis: `${d.tasks} tasks × ${d.taskVcpu} vCPU`,
      usd: d.tasks * d.taskVcpu * HOURS * PRICES.fargateVcpuHourArm,
    },
    {
      item: 'Fargate arm64 memory',
      basis: `${d.tasks} tasks × ${d.taskGb} GB`,
      usd: d.tasks * d.taskGb * HOURS * PRICES.fargateGbHourArm,
    },
    {
      item: 'Public IPv4: Elastic IPs of the NLB (MX)',
      basis: `${d.elasticIps}`,
      usd: d.elasticIps * HOURS * PRICES.publicIpv4Hour,
    },
    {
      item: 'Public IPv4: one per task (no NAT gateway)',
      basis: `${d.tasks}`,
      usd: d.tasks * HOURS * PRICES.publicIpv4Hour,
    },
    {
      item: 'CloudWatch alarms',
      basis: `${d.alarmMetrics} metrics read`,
      usd: d.alarmMetrics * PRICES.alarmMetric,
    },
    { item: 'CloudWatch dashboard', basis: `${d.dashboards}`, usd: d.dashboards * PRICES.dashboard },
    {
      item: 'Custom metrics (EMF)',
      basis: `≈ ${d.customMetrics}`,
      usd: d.customMetrics * PRICES.customMetric,
    },
    { item: 'Secrets Manager', basis: `${d.secrets} secrets`, usd: d.secrets * PRICES.secret },
    { item: 'KMS key of the alarm topic', basis: `${d.kmsKeys}`, usd: d.kmsKeys * PRICES.kmsKey },
    {
      item: 'SQS empty long polls and readiness probes',
      basis: `${(d.idleSqsRequestsPerMonth / 1e6).toFixed(2)} M requests`,
      usd: (d.idleSqsRequestsPerMonth / 1e6) * PRICES.sqsPerMillion,
    },
    routeSyncLine(0, d),
  ];
}

/** The smallest Lambda memory sizes considered, MB; 1769 MB is one full vCPU. */
export const LAMBDA_SIZES = [256, 512, 768, 1024, 1536, 1769] as const;
const FULL_VCPU_MB = 1769;
/** How much slower than on a full vCPU a function may run at the size chosen for it. */
export const DURATION_TOLERANCE = 1.5;

/** Modelled duration at `memoryMb`: Lambda's CPU share grows with memory up to one vCPU at 1769 MB. */
export function durationAt(memoryMb: number, cpuMs: number, waitMs: number): number {
  return waitMs + cpuMs / Math.min(1, memoryMb / FULL_VCPU_MB);
}

/**
 * The cheapest size that holds the measured peak (with a quarter to spare) and keeps the duration
 * within {@link DURATION_TOLERANCE} of a full vCPU's. Below one vCPU the CPU part costs the same
 * at any size (GB × seconds), so the waits decide: smaller is cheaper, until it is too slow.
 */
export function chooseMemory(
  cpuMs: number,
  waitMs: number,
  peakMiB: number,
): { memoryMb: number; ms: number } {
  const fastest = durationAt(FULL_VCPU_MB, cpuMs, waitMs);
  const fits = LAMBDA_SIZES.filter(
    (size) => size >= peakMiB * 1.25 && durationAt(size, cpuMs, waitMs) <= fastest * DURATION_TOLERANCE,
  );
  const best =
    [...fits].sort((a, b) => a * durationAt(a, cpuMs, waitMs) - b * durationAt(b, cpuMs, waitMs))[0] ??
    FULL_VCPU_MB;
  return { memoryMb: best, ms: durationAt(best, cpuMs, waitMs) };
}

const cpuAndWait = (run: CostRun, name: 'parse' | 'deliver') => {
  const cpuMs = run.cpuMs[name];
  // Deliver also waits for the customer's endpoint, which the bench's local receiver answers at once.
  const waitMs = Math.max(0, run.durationMs[name] - cpuMs) + (name === 'deliver' ? DECLARED.endpointMs : 0);
  return [cpuMs, waitMs] as const;
};

/**
 * The memory of parse and deliver, chosen from the low-volume run (one record per invocation, the
 * usual case), and each one's modelled duration per message in `run` at that size.
 */
export function functionSizes(measured: CostMeasurement, run: CostRun = measured.low) {
  const size = (name: 'parse' | 'deliver') => {
    const { memoryMb } = chooseMemory(...cpuAndWait(measured.low, name), measured.peakRssMiB);
    return { memoryMb, ms: durationAt(memoryMb, ...cpuAndWait(run, name)) };
  };
  return { parse: size('parse'), deliver: size('deliver') };
}

const requests = (run: CostRun, prefix: string) =>
  Object.entries(run.requestsPerMessage)
    .filter(([kind]) => kind.startsWith(prefix))
    .reduce((sum, [, n]) => sum + n, 0);

/** Cost of one million messages of the measured size to one endpoint, line by line. */
export function perMillion(measured: CostMeasurement, run: CostRun): CostLine[] {
  const million = 1e6;
  const sizes = functionSizes(measured, run);
  const wire = measured.messageBytes + DECLARED.smtpOverheadBytes;
  // S3 bills PUT, COPY, POST and LIST alike; GET and HEAD alike; DELETE is free.
  const puts = [
    'S3 PutObject',
    'S3 UploadPart',
    'S3 CreateMultipart',
    'S3 CompleteMultipart',
    'S3 List',
    'S3 PostObject',
  ]
    .map((prefix) => requests(run, prefix))
    .reduce((sum, n) => sum + n, 0);
  const gets = requests(run, 'S3 GetObject') + requests(run, 'S3 HeadObject');
  const sqs = requests(run, 'SQS');
  const invocations = 1 / run.recordsPerInvocation.parse + 1 / run.recordsPerInvocation.deliver;
  const logBytes = run.logBytesPerMessage + invocations * DECLARED.platformLogBytesPerInvocation;
  const months = DECLARED.retentionDays / 30;
  const gbSeconds = (name: 'parse' | 'deliver') => (sizes[name].memoryMb / 1024) * (sizes[name].ms / 1000);
  return [
    {
      item: 'NLB processed bytes (1 LCU = 1 GB an hour for TCP)',
      basis: `${(wire / 1000).toFixed(1)} KB`,
      usd: (wire / GB) * PRICES.nlbLcuHour * million,
    },
    {
      item: 'NLB cross-zone traffic (about half, both ways)',
      basis: `${(wire / 2000).toFixed(1)} KB`,
      usd: (wire / 2 / GB) * 2 * PRICES.crossAzGb * million,
    },
    {
      item: 'S3 PUT, POST and LIST requests',
      basis: `${puts.toFixed(2)} per message`,
      usd: puts * PRICES.s3PutPer1000 * 1000,
    },
    {
      item: 'S3 GET and HEAD requests',
      basis: `${gets.toFixed(2)} per message`,
      usd: gets * PRICES.s3GetPer1000 * 1000,
    },
    {
      item: `S3 storage, kept ${DECLARED.retentionDays} days`,
      basis: `${(run.storedBytesPerMessage / 1000).toFixed(1)} KB`,
      usd: (run.storedBytesPerMessage / GB) * months * PRICES.s3GbMonth * million,
    },
    { item: 'SQS requests', basis: `${sqs.toFixed(2)} per message`, usd: sqs * PRICES.sqsPerMillion },
    {
      item: `Lambda parse, arm64, ${sizes.parse.memoryMb} MB × ${sizes.parse.ms.toFixed(0)} ms`,
      basis: `${gbSeconds('parse').toFixed(3)} GB-s`,
      usd: gbSeconds('parse') * PRICES.lambdaGbSecondArm * million,
    },
    {
      item: `Lambda deliver, arm64, ${sizes.deliver.memoryMb} MB × ${sizes.deliver.ms.toFixed(0)} ms`,
      basis: `${gbSeconds('deliver').toFixed(3)} GB-s`,
      usd: gbSeconds('deliver') * PRICES.lambdaGbSecondArm * million,
    },
    {
      item: 'Lambda invocations',
      basis: `${invocations.toFixed(2)} per message`,
      usd: invocations * PRICES.lambdaPerMillion,
    },
    {
      item: 'Data out to the endpoint (webhook ≈ the stored payload)',
      basis: `${(wire / 1000).toFixed(1)} KB`,
      usd: (wire / GB) * PRICES.dataOutGb * million,
    },
    {
      item: 'CloudWatch Logs ingestion and 30 days of storage',
      basis: `${(logBytes / 1000).toFixed(1)} KB`,
      usd: (logBytes / GB) * (PRICES.logsIngestGb + PRICES.logsGbMonth) * million,
    },
    {
      item: 'Message log and duplicate marker writes (DynamoDB on demand)',
      basis: `${run.dynamoWriteUnits.table.toFixed(1)} WRU + ${run.dynamoWriteUnits.indexes.toFixed(1)} index entries`,
      usd: (run.dynamoWriteUnits.table + run.dynamoWriteUnits.indexes) * PRICES.dynamoWritePerMillion,
    },
    {
      item: 'Message log storage and point-in-time recovery',
      basis: `${(run.dynamoBytesPerMessage / 1000).toFixed(1)} KB`,
      usd:
        (run.dynamoBytesPerMessage / GB) *
        months *
        (PRICES.dynamoGbMonth + PRICES.dynamoPitrGbMonth) *
        million,
    },
  ];
}

export const total = (lines: readonly CostLine[]) => lines.reduce((sum, line) => sum + line.usd, 0);
