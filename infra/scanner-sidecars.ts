import { Duration, Size } from 'aws-cdk-lib';
import {
  AwsLogDriverMode,
  type ContainerDefinition,
  ContainerImage,
  type FargateTaskDefinition,
  LogDrivers,
} from 'aws-cdk-lib/aws-ecs';
import type { ILogGroup } from 'aws-cdk-lib/aws-logs';
import { type ScannersConfig, ScannersConfigSchema } from '../core/filtering/index.ts';
import { formatConfigPath } from '../core/index.ts';

/**
 * The official images, by feature-release tag: their maintainers rebuild a feature tag for each
 * patch release and base-image fix, with no breaking change inside a series (docs/deploy.md says
 * how to pin a digest instead). `clamav/clamav:1.5` ships with a signature database, so a new task
 * scans at once and freshclam only fetches the day's differences.
 */
export const SCANNER_IMAGES = { rspamd: 'rspamd/rspamd:4.3', clamav: 'clamav/clamav:1.5' } as const;

/**
 * What each sidecar takes from the task: CPU units, memory reserved and, for rspamd, a hard limit.
 * The CPU shares hold what the bench measured at the listener's target load with a margin
 * (docs/cost.md, "Scanner sidecars": rspamd ≈ 80 units, clamd ≈ 35); a container's share is a
 * floor, so a burst also takes what the task has idle. ClamAV holds its whole signature set in
 * memory (≈ 1.2 GB) and reloads it without a second copy (`ConcurrentDatabaseReload no`, which
 * otherwise needs ≈ 3 GB for a few seconds twice a day).
 */
export const SIDECAR_SIZES = {
  rspamd: { cpu: 128, memoryReservationMiB: 512, memoryLimitMiB: 768 },
  clamav: { cpu: 128, memoryReservationMiB: 1536 },
} as const;

/** Which sidecars run (deploy settings `listener.scanners`). */
export interface ScannerSidecarSettings {
  readonly rspamd: boolean;
  readonly clamav: boolean;
}

/**
 * Where the sidecars listen, on the task's loopback: the addresses the listener's `scanners`
 * section defaults to (core/filtering/schemas.ts), so a section that names no address reaches them.
 */
const SIDECAR_ADDRESSES = ScannersConfigSchema.parse({ rspamd: {}, clamd: {} }) as {
  rspamd: NonNullable<ScannersConfig['rspamd']>;
  clamd: NonNullable<ScannersConfig['clamd']>;
};
const RSPAMD_PORT = Number(new URL(SIDECAR_ADDRESSES.rspamd.url).port);

/** The config sections and the settings that run their scanner. */
const SECTIONS = [
  { key: 'rspamd', setting: 'rspamd' },
  { key: 'clamd', setting: 'clamav' },
] as const;

/**
 * The config document the listener reads in AWS, with `scanners` agreeing with the sidecars the
 * settings run: each sidecar's section is switched on (an empty object: the defaults are its
 * loopback address), keeping what the config sets for it (sizes, concurrency, budget). A section
 * the config turns on with no sidecar to answer, or pointed elsewhere than the sidecar, is an
 * issue: in the task nothing else listens on loopback, and the tasks may only reach port 443.
 * With no sidecar and no section, the document is left exactly as written.
 */
export function withScannerSidecars(
  document: Record<string, unknown>,
  settings: ScannerSidecarSettings,
): { document: Record<string, unknown>; scanners: ScannersConfig; issues: string[] } {
  const issues: string[] = [];
  const given = document.scanners;
  if (given !== undefined && (typeof given !== 'object' || given === null || Array.isArray(given))) {
    return { document, scanners: ScannersConfigSchema.parse({}), issues: ['scanners: must be an object'] };
  }
  const section: Record<string, unknown> = { ...(given as Record<string, unknown> | undefined) };
  for (const { key, setting } of SECTIONS) {
    const value = section[key];
    if (settings[setting]) {
      if (value === null) {
        issues.push(
          `scanners.${key}: null (off), but the settings run the ${setting} sidecar (listener.scanners.${setting}); drop the null or turn the sidecar off`,
        );
      } else section[key] = { ...(value as object | undefined) };
    } else if (value !== undefined && value !== null) {
      issues.push(
        `scanners.${key}: set, but no ${setting} runs beside the listener in AWS; turn on listener.scanners.${setting} in the deploy settings`,
      );
    }
  }
  const parsed = ScannersConfigSchema.safeParse(section);
  if (!parsed.success) {
    for (const problem of parsed.error.issues) {
      issues.push(`${formatConfigPath(['scanners', ...problem.path])}: ${problem.message}`);
    }
    return { document, scanners: ScannersConfigSchema.parse({}), issues };
  }
  const { rspamd, clamd } = parsed.data;
  if (rspamd && new URL(rspamd.url).origin !== new URL(SIDECAR_ADDRESSES.rspamd.url).origin) {
    issues.push(
      `scanners.rspamd.url: the rspamd sidecar listens on ${SIDECAR_ADDRESSES.rspamd.url}; drop the url`,
    );
  }
  if (clamd && (clamd.host !== SIDECAR_ADDRESSES.clamd.host || clamd.port !== SIDECAR_ADDRESSES.clamd.port)) {
    issues.push(
      `scanners.clamd: the ClamAV sidecar listens on ${SIDECAR_ADDRESSES.clamd.host}:${SIDECAR_ADDRESSES.clamd.port}; drop host and port`,
    );
  }
  const changed = given !== undefined || settings.rspamd || settings.clamav;
  return { document: changed ? { ...document, scanners: section } : document, scanners: parsed.data, issues };
}

/**
 * rspamd's health check, run inside its container: `GET /ping` on the normal worker (the port the
 * listener scans on) answers `pong`. The image has bash but no HTTP client, so bash's /dev/tcp
 * sends the request.
 */
export function rspamdHealthCheck(port: number = RSPAMD_PORT): string[] {
  return [
    'bash',
    '-c',
    `exec 3<>/dev/tcp/127.0.0.1/${port} && printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q pong <&3`,
  ];
}

export interface ScannerSidecarsProps {
  /** The scanners the listener uses; each one that is not null runs as a sidecar. */
  readonly scanners: ScannersConfig;
  /** The listener's log group; each sidecar logs to its own stream prefix there. */
  readonly logGroup: ILogGroup;
}

/**
 * Adds rspamd and ClamAV to the listener's task, as the `scanners` section asks. Both are
 * non-essential (a scanner that dies never stops the listener: verdicts become `unavailable` and
 * the mail flows) and restarted by ECS when they exit; the listener does not wait for them to
 * start. They share the task's network namespace, so the listener reaches them on 127.0.0.1 and
 * nothing outside the task can. ClamAV's image runs freshclam beside clamd: new signatures come
 * over HTTPS, which the task's security group allows.
 */
export function addScannerSidecars(
  taskDefinition: FargateTaskDefinition,
  props: ScannerSidecarsProps,
): { rspamd?: ContainerDefinition; clamav?: ContainerDefinition } {
  const logging = (streamPrefix: string) =>
    LogDrivers.awsLogs({
      logGroup: props.logGroup,
      streamPrefix,
      mode: AwsLogDriverMode.NON_BLOCKING,
      maxBufferSize: Size.mebibytes(4),
    });
  const containers: { rspamd?: ContainerDefinition; clamav?: ContainerDefinition } = {};
  if (props.scanners.rspamd) {
    taskDefinition.addVolume({ name: 'rspamd-data' });
    containers.rspamd = taskDefinition.addContainer('rspamd', {
      image: ContainerImage.fromRegistry(SCANNER_IMAGES.rspamd),
      essential: false,
      ...SIDECAR_SIZES.rspamd,
      // The image's own recommendation: a read-only root, with its database folder (a VOLUME of the
      // image, whose contents and owner ECS copies into the bind mount) writable.
      readonlyRootFilesystem: true,
      logging: logging('rspamd'),
      healthCheck: {
        command: ['CMD', ...rspamdHealthCheck()],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(60),
      },
      enableRestartPolicy: true,
      restartAttemptPeriod: Duration.seconds(60),
    });
    containers.rspamd.addMountPoints({
      sourceVolume: 'rspamd-data',
      containerPath: '/var/lib/rspamd',
      readOnly: false,
    });
  }
  if (props.scanners.clamd) {
    containers.clamav = taskDefinition.addContainer('clamav', {
      image: ContainerImage.fromRegistry(SCANNER_IMAGES.clamav),
      essential: false,
      ...SIDECAR_SIZES.clamav,
      // The image's entrypoint writes clamd.conf from these at start, so its root stays writable.
      environment: {
        CLAMD_CONF_ConcurrentDatabaseReload: 'no',
        // What the listener streams at most (scanners.clamd.maxBytes): clamd must take all of it.
        CLAMD_CONF_StreamMaxLength: String(props.scanners.clamd.maxBytes),
        // freshclam's default is 12 checks a day; the image's own default is 1.
        FRESHCLAM_CHECKS: '12',
      },
      logging: logging('clamav'),
      healthCheck: {
        // The image's own check: clamd answers PING on its TCP port.
        command: ['CMD', 'clamdcheck.sh'],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(10),
        retries: 3,
        // Loading the signature set takes a minute or more on a quarter vCPU.
        startPeriod: Duration.seconds(300),
      },
      enableRestartPolicy: true,
      restartAttemptPeriod: Duration.seconds(60),
    });
  }
  return containers;
}

/** CPU units and memory (MiB) the sidecars `scanners` asks for take from the task. */
export function sidecarResources(scanners: ScannersConfig): { cpu: number; memoryMiB: number } {
  const sizes = [
    ...(scanners.rspamd
      ? [{ cpu: SIDECAR_SIZES.rspamd.cpu, memoryMiB: SIDECAR_SIZES.rspamd.memoryLimitMiB }]
      : []),
    ...(scanners.clamd
      ? [{ cpu: SIDECAR_SIZES.clamav.cpu, memoryMiB: SIDECAR_SIZES.clamav.memoryReservationMiB }]
      : []),
  ];
  return {
    cpu: sizes.reduce((sum, size) => sum + size.cpu, 0),
    memoryMiB: sizes.reduce((sum, size) => sum + size.memoryMiB, 0),
  };
}
