import { resolve } from 'node:path';
import { Duration, RemovalPolicy, Size, Stack, Validations } from 'aws-cdk-lib';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';
import {
  CfnEIP,
  type IVpc,
  Peer,
  Port,
  SecurityGroup,
  type SubnetSelection,
  SubnetType,
} from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  AvailabilityZoneRebalancing,
  AwsLogDriverMode,
  Cluster,
  type ContainerDefinition,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  FargatePlatformVersion,
  FargateService,
  FargateTaskDefinition,
  LinuxParameters,
  LogDrivers,
  OperatingSystemFamily,
} from 'aws-cdk-lib/aws-ecs';
import {
  NetworkLoadBalancer,
  type NetworkTargetGroup,
  Protocol,
} from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { ScannersConfig } from '../core/filtering/index.ts';
import {
  type Config,
  ConfigError,
  ENV,
  METRIC_SERVICES,
  METRICS_NAMESPACE,
  type MetricName,
} from '../core/index.ts';
import { healthCheckCommand } from '../listener/healthcheck.ts';
import type { ControlTable } from './control-plane.ts';
import type { DeployedConfig } from './deployed-config.ts';
import { fargateTaskSize } from './fargate.ts';
import { addScannerSidecars, sidecarResources } from './scanner-sidecars.ts';
import type { Secrets } from './secrets.ts';
import type { Storage } from './storage.ts';

/** The repository root: the listener image's build context. */
const REPO_ROOT = resolve(import.meta.dirname, '..');
/** Fargate's limit for the SIGTERM → SIGKILL window. */
const MAX_STOP_TIMEOUT_SECONDS = 120;
/** Time the process gets after the listener's drain (closeTimeout) to flush logs and exit. */
const EXIT_MARGIN_SECONDS = 15;

/** The public port each listener mode is reached on, per RFC 5321 (25), RFC 8314 (465) and RFC 6409 (587; 2525 is the common alternative). */
const STANDARD_PORTS: ReadonlyArray<{ port: number; mode: Config['listeners'][number]['mode'] }> = [
  { port: 25, mode: 'mx' },
  { port: 465, mode: 'implicit-tls' },
  { port: 587, mode: 'submission' },
  { port: 2525, mode: 'submission' },
];

export interface ListenerServiceProps {
  readonly vpc: IVpc;
  /** The validated config: listener ports and modes, health port, closeTimeout, maxConnections. */
  readonly config: Config;
  /** The deployed config the tasks read (and wait for). */
  readonly deployedConfig: DeployedConfig;
  /** Where raw messages are stored (`raw/`). */
  readonly storage: Storage;
  /** Where each stored message's InboundEvent goes. */
  readonly inboundQueue: IQueue;
  /** The STARTTLS certificate and the SMTP AUTH passwords the tasks read. */
  readonly secrets: Secrets;
  /** The control plane's table: API routes and domains for RCPT decisions, the message log, refusals. */
  readonly controlTable: ControlTable;
  /**
   * The content scanners the listener uses (the config's `scanners` section, as deployed): each one
   * that is not null runs as a sidecar in every task, and the task grows by what it takes.
   * @default - none
   */
  readonly scanners?: ScannersConfig;
  /**
   * The listener image.
   * @default - built from listener/Dockerfile for linux/arm64 at `cdk deploy` (synth only stages the context)
   */
  readonly image?: ContainerImage;
  /**
   * NLB port → container port (the `port` of a listener in the config).
   * @default - 25 → the mx listener, 465 → implicit-tls, 587 and 2525 → submission (those the config has)
   */
  readonly publicPorts?: Readonly<Record<number, number>>;
  /**
   * Elastic IPs to put on the NLB, one per public subnet in AZ order (addresses already in DNS,
   * SPF records and allow-lists).
   * @default - one new Elastic IP per AZ, retained when the stack is deleted
   */
  readonly elasticIps?: ReadonlyArray<{ readonly allocationId: string; readonly publicIp: string }>;
  /**
   * Tasks always running (autoscaling's minimum); spread across AZs.
   * @default 2
   */
  readonly minCount?: number;
  /**
   * Upper bound for autoscaling.
   * @default 6
   */
  readonly maxCount?: number;
  /**
   * The listener's CPU units (arm64): the task's, without scanner sidecars. The default holds the
   * bench's target load (docs/cost.md, "Listener task size").
   * @default 256
   */
  readonly cpu?: number;
  /**
   * The listener's memory, MiB: the task's, without scanner sidecars.
   * @default 1024
   */
  readonly memoryLimitMiB?: number;
  /**
   * Open connections per task above which the service scales out.
   * @default - half of the config's limits.maxConnections
   */
  readonly connectionsPerTask?: number;
  /**
   * Container Insights on the cluster: per-task CPU, memory and network metrics, billed as custom
   * metrics (docs/cost.md). The alarms, the dashboard and the scaling read none of them.
   * @default false
   */
  readonly containerInsights?: boolean;
  /**
   * Average CPU the service keeps by scaling.
   * @default 60
   */
  readonly cpuTargetPercent?: number;
  /**
   * Retention of the container's logs.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Give tasks public IPs, in public subnets, so they reach S3, SQS, Secrets Manager and ECR without
   * a NAT gateway. Their security group admits only the load balancer.
   * @default - true when the VPC has no private subnets with egress, false otherwise
   */
  readonly assignPublicIp?: boolean;
}

/**
 * The SMTP listener: an arm64 Fargate service behind an internet-facing NLB with one fixed Elastic
 * IP per AZ. Client IPs reach the tasks (client IP preservation), health is checked over HTTP on the
 * health port, and deregistration plus the stop timeout let open sessions finish.
 */
export class ListenerService extends Construct {
  public readonly cluster: Cluster;
  public readonly taskDefinition: FargateTaskDefinition;
  public readonly container: ContainerDefinition;
  public readonly service: FargateService;
  public readonly loadBalancer: NetworkLoadBalancer;
  /** The NLB's security group: SMTP from anywhere, out only to the tasks. */
  public readonly loadBalancerSecurityGroup: SecurityGroup;
  /** The tasks' security group: in only from the NLB. */
  public readonly securityGroup: SecurityGroup;
  /** One target group per public port. */
  public readonly targetGroups: readonly NetworkTargetGroup[];
  /** The fixed public addresses of the NLB, one per AZ. */
  public readonly publicIps: readonly string[];
  public readonly logGroup: LogGroup;
  /** NLB port → container port. */
  public readonly publicPorts: Readonly<Record<number, number>>;
  /** Tasks always running (autoscaling's minimum). */
  public readonly minCount: number;
  /** The scanner sidecars in the task, as the `scanners` prop asked. */
  public readonly scanners: { readonly rspamd?: ContainerDefinition; readonly clamav?: ContainerDefinition };

  constructor(scope: Construct, id: string, props: ListenerServiceProps) {
    super(scope, id);
    const { vpc, config } = props;
    const minCount = props.minCount ?? 2;
    this.minCount = minCount;
    const maxCount = props.maxCount ?? 6;
    if (minCount < 2) throw new Error(`${this.node.path}: minCount ${minCount}: at least 2, one per AZ`);
    if (maxCount < minCount)
      throw new Error(`${this.node.path}: maxCount ${maxCount} is below minCount ${minCount}`);
    const issues = listenerConfigIssues(config, props.publicPorts);
    if (issues.length > 0) throw new ConfigError(this.node.path, issues);
    const closeTimeout = config.limits.closeTimeout;
    this.publicPorts = props.publicPorts ?? defaultPublicPorts(config);
    const containerPorts = new Set(config.listeners.map((listener) => listener.port));
    const healthPort = config.health.port;

    const privateSubnets = vpc.privateSubnets;
    const assignPublicIp = props.assignPublicIp ?? privateSubnets.length === 0;
    if (!assignPublicIp && privateSubnets.length === 0) {
      throw new Error(
        `${this.node.path}: assignPublicIp false needs private subnets with egress (NAT) in the VPC`,
      );
    }
    const taskSubnets: SubnetSelection = {
      subnetType: assignPublicIp ? SubnetType.PUBLIC : SubnetType.PRIVATE_WITH_EGRESS,
    };

    this.cluster = new Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: props.containerInsights ? ContainerInsights.ENABLED : ContainerInsights.DISABLED,
    });
    if (!props.containerInsights) {
      Validations.of(this.cluster).acknowledge({
        id: 'AwsSolutions-ECS4',
        reason:
          "Container Insights is a setting (listener.containerInsights), off by default for its cost: the alarms, the dashboard and the scaling read the service's own CPU and memory, the load balancer's target health and the listener's EMF metrics.",
      });
    }

    const listenerSize = { cpu: props.cpu ?? 256, memoryMiB: props.memoryLimitMiB ?? 1024 };
    const scanners = props.scanners ?? { rspamd: null, clamd: null, budget: 5, stall: 2 };
    const sidecars = sidecarResources(scanners);
    const withSidecars = sidecars.cpu > 0;
    const taskSize = withSidecars
      ? fargateTaskSize(listenerSize.cpu + sidecars.cpu, listenerSize.memoryMiB + sidecars.memoryMiB)
      : listenerSize;
    this.taskDefinition = new FargateTaskDefinition(this, 'Task', {
      cpu: taskSize.cpu,
      memoryLimitMiB: taskSize.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: CpuArchitecture.ARM64,
        operatingSystemFamily: OperatingSystemFamily.LINUX,
      },
    });
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The environment holds only resource names (bucket, queue URL, table, config location, region) and ClamAV settings; secret values are read from Secrets Manager by the listener at start and re-read on reloadInterval, so a certificate rotation needs no task restart.',
    });
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.container = this.taskDefinition.addContainer('listener', {
      image:
        props.image ??
        ContainerImage.fromAsset(REPO_ROOT, {
          file: 'listener/Dockerfile',
          platform: Platform.LINUX_ARM64,
          exclude: ['node_modules', 'cdk.out', '.git', '.mailbridge'],
        }),
      // Resource names and the config location only; secret values are read from Secrets Manager.
      environment: {
        ...props.deployedConfig.environment,
        [ENV.bucket]: props.storage.bucket.bucketName,
        [ENV.inboundQueueUrl]: props.inboundQueue.queueUrl,
        ...props.controlTable.environment,
        AWS_REGION: Stack.of(this).region,
      },
      // Beside sidecars, the listener's own share is reserved for it.
      ...(withSidecars ? { cpu: listenerSize.cpu, memoryReservationMiB: listenerSize.memoryMiB } : {}),
      // The JSON log lines (and EMF metrics) go to CloudWatch as written; a full buffer drops lines rather than blocking SMTP sessions.
      logging: LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: 'listener',
        mode: AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
      readonlyRootFilesystem: true,
      // An init as PID 1 forwards SIGTERM to node and reaps what it leaves behind.
      linuxParameters: new LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      stopTimeout: Duration.seconds(closeTimeout + EXIT_MARGIN_SECONDS),
      healthCheck: {
        command: ['CMD', ...healthCheckCommand(healthPort)],
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        startPeriod: Duration.seconds(30),
        retries: 3,
      },
      portMappings: [...containerPorts, healthPort].map((containerPort) => ({ containerPort })),
    });

    // Scanners answer on the task's loopback; the listener does not wait for them (a verdict is `unavailable` until they answer).
    this.scanners = addScannerSidecars(this.taskDefinition, { scanners, logGroup: this.logGroup });

    if (this.taskDefinition.executionRole) {
      Validations.of(this.taskDefinition.executionRole).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecr:GetAuthorizationToken, which the execution role needs to pull the image, does not support resource-level permissions; image pulls themselves are scoped to the asset repository.',
      });
    }

    // Least privilege: what the task does and nothing else.
    const taskRole = this.taskDefinition.taskRole;
    props.storage.grantPutRaw(taskRole);
    props.inboundQueue.grantSendMessages(taskRole);
    props.secrets.grantListenerRead(taskRole);
    props.controlTable.grantRouteReads(taskRole);
    props.controlTable.grantLogWrites(taskRole);
    props.controlTable.grantRefusalWrites(taskRole);

    this.securityGroup = new SecurityGroup(this, 'TaskSecurityGroup', {
      vpc,
      description: 'mailbridge listener tasks: SMTP and health from the NLB only',
      allowAllOutbound: false,
    });
    // The tasks only call AWS APIs (S3, SQS, DynamoDB, Secrets Manager, CloudWatch Logs, ECR) and, with
    // ClamAV, its signature mirrors: all over HTTPS.
    this.securityGroup.addEgressRule(Peer.anyIpv4(), Port.tcp(443), 'AWS APIs over HTTPS');

    this.service = new FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      assignPublicIp,
      vpcSubnets: taskSubnets,
      securityGroups: [this.securityGroup],
      platformVersion: FargatePlatformVersion.LATEST,
      circuitBreaker: { enable: true, rollback: true },
      healthCheckGracePeriod: Duration.seconds(60),
      availabilityZoneRebalancing: AvailabilityZoneRebalancing.ENABLED,
    });

    props.deployedConfig.addReader(this.service, taskRole);

    this.loadBalancerSecurityGroup = new SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc,
      description: 'mailbridge NLB: SMTP from anywhere, out to the listener tasks only',
      allowAllOutbound: false,
    });
    for (const port of Object.keys(this.publicPorts)) {
      this.loadBalancerSecurityGroup.addIngressRule(Peer.anyIpv4(), Port.tcp(Number(port)), `SMTP ${port}`);
    }
    Validations.of(this.loadBalancerSecurityGroup).acknowledge({
      id: 'AwsSolutions-EC23',
      reason:
        'An MX host must accept SMTP from any address on the internet; only the SMTP ports are open, and the listener applies per-IP connection and auth-failure limits.',
    });
    for (const port of [...containerPorts, healthPort]) {
      this.service.connections.allowFrom(this.loadBalancerSecurityGroup, Port.tcp(port), 'from the NLB');
    }

    const publicSubnets = vpc.publicSubnets;
    const addresses = props.elasticIps ?? this.allocateElasticIps(publicSubnets.length);
    if (addresses.length !== publicSubnets.length) {
      throw new Error(
        `${this.node.path}: ${addresses.length} Elastic IP(s) for ${publicSubnets.length} public subnets; give one per AZ`,
      );
    }
    this.publicIps = addresses.map((address) => address.publicIp);
    this.loadBalancer = new NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc,
      internetFacing: true,
      crossZoneEnabled: true,
      securityGroups: [this.loadBalancerSecurityGroup],
      subnetMappings: publicSubnets.map((subnet, index) => ({
        subnet,
        allocationId: addresses[index]!.allocationId,
      })),
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason:
        'NLB access logs record TLS listeners only; these listeners are plain TCP (STARTTLS is negotiated inside SMTP by the listener), so the log would stay empty. Sessions are logged by the listener as JSON, and VPC flow logs (vpc.flowLogs) can record rejected traffic.',
    });

    // Sessions still open when a task is deregistered keep going for closeTimeout, then SIGTERM starts the listener's own drain.
    const deregistrationDelay = Duration.seconds(closeTimeout);
    this.targetGroups = Object.entries(this.publicPorts).map(([port, containerPort]) =>
      this.loadBalancer
        .addListener(`Smtp${port}`, { port: Number(port), protocol: Protocol.TCP })
        .addTargets(`Smtp${port}`, {
          port: containerPort,
          protocol: Protocol.TCP,
          targets: [
            this.service.loadBalancerTarget({ containerName: this.container.containerName, containerPort }),
          ],
          preserveClientIp: true,
          proxyProtocolV2: config.proxyProtocol,
          deregistrationDelay,
          // An HTTP check can answer "draining" (503); a TCP check would open SMTP sessions.
          healthCheck: {
            protocol: Protocol.HTTP,
            port: String(healthPort),
            path: '/healthz',
            interval: Duration.seconds(10),
            timeout: Duration.seconds(5),
            healthyThresholdCount: 2,
            unhealthyThresholdCount: 2,
          },
        }),
    );

    // No desiredCount on the service: CloudFormation would reset the running count to it on every
    // deploy that touches the service; minCapacity keeps the floor.
    const scaling = this.service.autoScaleTaskCount({ minCapacity: minCount, maxCapacity: maxCount });
    // Two target tracking policies: Application Auto Scaling scales out when either asks and in only
    // when both agree, so neither undoes what the other just did.
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: props.cpuTargetPercent ?? 60,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.minutes(5),
    });
    const connectionsPerTask =
      props.connectionsPerTask ?? Math.max(1, Math.floor(config.limits.maxConnections / 2));
    // Sessions hold slots without costing CPU, so CPU alone never scales out against them; each
    // task publishes the share of its session capacity in use (its peak of the minute), and the
    // average over tasks is open connections per task over maxConnections.
    scaling.scaleToTrackCustomMetric('Sessions', {
      metric: this.sessionUsage(),
      targetValue: (100 * connectionsPerTask) / config.limits.maxConnections,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.minutes(5),
    });
  }

  /** New Elastic IPs, kept when a deploy replaces them or the stack is deleted, not after a failed create. */
  private allocateElasticIps(count: number): { allocationId: string; publicIp: string }[] {
    return Array.from({ length: count }, (_, index) => {
      const eip = new CfnEIP(this, `Eip${index}`, {
        domain: 'vpc',
        tags: [{ key: 'Name', value: `mailbridge-mx-${index}` }],
      });
      // The addresses are in SPF records, allow-lists and the PTR. A failed first deploy releases
      // them, or each retry would leak two against a default quota of 5 per region.
      eip.applyRemovalPolicy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE);
      return { allocationId: eip.attrAllocationId, publicIp: eip.attrPublicIp };
    });
  }

  /** Share of the session capacity in use, % (the listener's `session_usage`), averaged over tasks per minute. */
  public sessionUsage(): Metric {
    return new Metric({
      namespace: METRICS_NAMESPACE,
      metricName: 'session_usage' satisfies MetricName<'listener'>,
      dimensionsMap: { service: METRIC_SERVICES.listener },
      statistic: 'Average',
      period: Duration.minutes(1),
    });
  }
}

/**
 * What the listener service needs from the config, by field: the drain must end before Fargate's
 * stop timeout, and each public port must reach a config listener.
 */
export function listenerConfigIssues(
  config: Config,
  publicPorts?: Readonly<Record<number | string, number>>,
): string[] {
  const issues: string[] = [];
  const maxCloseTimeout = MAX_STOP_TIMEOUT_SECONDS - EXIT_MARGIN_SECONDS;
  if (config.limits.closeTimeout > maxCloseTimeout) {
    issues.push(
      `limits.closeTimeout: at most ${maxCloseTimeout}s (Fargate stops a task ${MAX_STOP_TIMEOUT_SECONDS}s after SIGTERM, and the process needs ${EXIT_MARGIN_SECONDS}s to exit)`,
    );
  }
  const containerPorts = new Set(config.listeners.map((listener) => listener.port));
  for (const [port, target] of Object.entries(publicPorts ?? {})) {
    if (!containerPorts.has(target))
      issues.push(`publicPorts.${port}: ${target} is not the port of a listener in the config`);
  }
  if (Object.keys(publicPorts ?? defaultPublicPorts(config)).length === 0)
    issues.push('listeners: no listener in a mode the NLB publishes (mx, submission, implicit-tls)');
  return issues;
}

/** 25 → mx, 465 → implicit-tls, 587 and 2525 → submission, for the modes the config listens in. */
function defaultPublicPorts(config: Config): Record<number, number> {
  const ports: Record<number, number> = {};
  for (const { port, mode } of STANDARD_PORTS) {
    const listener = config.listeners.find((candidate) => candidate.mode === mode);
    if (listener) ports[port] = listener.port;
  }
  return ports;
}
