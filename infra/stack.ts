import { CfnOutput, Fn, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import {
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  type IVpc,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { ControlPlane } from './control-plane.ts';
import { DeployedConfig } from './deployed-config.ts';
import { Functions } from './functions.ts';
import { ListenerService } from './listener-service.ts';
import { Monitoring } from './monitoring.ts';
import { Queues } from './queues.ts';
import { Secrets } from './secrets.ts';
import type { Deployment } from './settings.ts';
import { Storage } from './storage.ts';

export interface MailbridgeStackProps extends StackProps {
  /** The validated settings and config (see `loadDeployment`). */
  readonly deployment: Deployment;
}

/**
 * The whole pipeline: NLB → listener tasks → S3 + inbound queue → parse → delivery queue → deliver,
 * with secrets, the control plane (its table and HTTP API), alarms and a dashboard. Each compute
 * construct grants its role what the resources it is given need (ListenerService, Functions,
 * ControlPlane).
 */
export class MailbridgeStack extends Stack {
  public readonly storage: Storage;
  public readonly queues: Queues;
  public readonly secrets: Secrets;
  public readonly deployedConfig: DeployedConfig;
  public readonly controlPlane: ControlPlane;
  public readonly listener: ListenerService;
  public readonly functions: Functions;
  public readonly monitoring: Monitoring;
  public readonly vpc: IVpc;

  constructor(scope: Construct, id: string, props: MailbridgeStackProps) {
    const { account, region } = props.deployment.settings;
    // Bound to the settings' account and region when they name both, environment-agnostic otherwise.
    super(scope, id, { env: account && region ? { account, region } : undefined, ...props });
    const { settings, config, configJson, scanners } = props.deployment;
    const logRetention = settings.logRetentionDays as RetentionDays;

    this.storage = new Storage(this, 'Storage', {
      encryption: settings.storage.encryption,
      versioned: settings.storage.versioned,
      rawRetentionDays: settings.storage.rawDays,
      payloadRetentionDays: settings.storage.payloadDays,
      attachmentRetentionDays: settings.storage.attachmentDays,
    });
    this.queues = new Queues(this, 'Queues');
    this.secrets = new Secrets(this, 'Secrets', { config, create: settings.secrets.create });
    this.deployedConfig = new DeployedConfig(this, 'Config', {
      storage: this.storage,
      json: configJson,
      logRetention,
    });
    this.vpc = this.createVpc(settings.vpc);
    this.controlPlane = new ControlPlane(this, 'ControlPlane', {
      deployedConfig: this.deployedConfig,
      storage: this.storage,
      inboundQueue: this.queues.inbound,
      // A log entry lives as long as the raw message it links to.
      retentionDays: settings.storage.rawDays,
      encryptionKey: this.storage.encryptionKey,
      throttle: { rateLimit: settings.api.rateLimit, burstLimit: settings.api.burstLimit },
      memorySize: settings.api.memoryMiB,
      logRetention,
    });

    // Each construct sets its environment and its grants from the resources it is given.
    this.listener = new ListenerService(this, 'Listener', {
      vpc: this.vpc,
      config,
      deployedConfig: this.deployedConfig,
      storage: this.storage,
      inboundQueue: this.queues.inbound,
      secrets: this.secrets,
      controlTable: this.controlPlane.table,
      scanners,
      publicPorts: settings.listener.publicPorts
        ? Object.fromEntries(
            Object.entries(settings.listener.publicPorts).map(([port, target]) => [Number(port), target]),
          )
        : undefined,
      elasticIps: settings.listener.elasticIps,
      minCount: settings.listener.tasks,
      maxCount: settings.listener.maxTasks,
      cpu: settings.listener.cpu,
      memoryLimitMiB: settings.listener.memoryMiB,
      connectionsPerTask: settings.listener.connectionsPerTask,
      containerInsights: settings.listener.containerInsights,
      logRetention,
    });

    this.functions = new Functions(this, 'Functions', {
      deployedConfig: this.deployedConfig,
      storage: this.storage,
      inboundQueue: this.queues.inbound,
      deliveryQueue: this.queues.delivery,
      deliveryDlq: this.queues.deliveryDlq,
      inboundDlq: this.queues.inboundDlq,
      secrets: this.secrets,
      controlTable: this.controlPlane.table,
      parse: toFunctionOptions(settings.functions.parse),
      deliver: toFunctionOptions(settings.functions.deliver),
      logRetention,
    });
    const { parse, deliver } = this.functions;

    this.monitoring = new Monitoring(this, 'Monitoring', {
      listener: this.listener,
      inboundQueue: this.queues.inbound,
      inboundDlq: this.queues.inboundDlq,
      deliveryQueue: this.queues.delivery,
      deliveryDlq: this.queues.deliveryDlq,
      parseFunction: parse,
      deliverFunction: deliver,
      controlPlane: this.controlPlane,
      quarantinedPerHour: settings.listener.scanners.quarantineAlarmPerHour,
      alarmEmail: settings.alarmEmail,
      nothingAcceptedHours: settings.nothingAcceptedHours,
    });

    this.addOutputs(config.domains, config.hostname);
  }

  private createVpc(settings: Deployment['settings']['vpc']): IVpc {
    if (settings.id) return Vpc.fromLookup(this, 'Vpc', { vpcId: settings.id });
    // Public subnets only: the tasks reach AWS APIs through public IPs, so there is no NAT gateway to pay for
    // (docs/cost.md); their security group admits nothing but the load balancer.
    const vpc = new Vpc(this, 'Vpc', {
      maxAzs: settings.maxAzs,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: 24 }],
      // Gateway endpoints are free: the tasks' S3 and DynamoDB (message log, route sync) traffic
      // stays on AWS's network instead of leaving through their public IPs.
      gatewayEndpoints: {
        S3: { service: GatewayVpcEndpointAwsService.S3 },
        DynamoDB: { service: GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });
    if (settings.flowLogs) {
      vpc.addFlowLog('FlowLog', {
        destination: FlowLogDestination.toS3(this.storage.accessLogsBucket, 'vpc-flow-logs/'),
        trafficType: FlowLogTrafficType.REJECT,
      });
    } else {
      Validations.of(vpc).acknowledge({
        id: 'AwsSolutions-VPC7',
        reason:
          'Flow logs are a setting (vpc.flowLogs), off by default for their cost: the tasks admit only the load balancer, the NLB admits only the SMTP ports, and the listener logs every session as JSON.',
      });
    }
    return vpc;
  }

  private addOutputs(domains: readonly string[], hostname: string): void {
    const ips = [...this.listener.publicIps];
    new CfnOutput(this, 'LoadBalancerDnsName', { value: this.listener.loadBalancer.loadBalancerDnsName });
    new CfnOutput(this, 'ElasticIps', {
      value: Fn.join(',', ips),
      description: 'Fixed public IPv4 addresses, one per AZ',
    });
    new CfnOutput(this, 'HostRecords', {
      value: Fn.join(' ', [`${hostname}.`, 'A', Fn.join(` ; ${hostname}. A `, ips)]),
      description: 'A records to publish for the MX host (no AAAA: IPv6 clients would lose their address)',
    });
    new CfnOutput(this, 'MxRecords', {
      value: domains.map((domain) => `${domain}. MX 10 ${hostname}.`).join(' ; '),
      description: 'MX records to publish, one per domain in the config',
    });
    new CfnOutput(this, 'ApiUrl', {
      value: this.controlPlane.url,
      description: 'The control plane API (Authorization: Bearer mbk_…); docs/deploy.md makes the first key',
    });
    new CfnOutput(this, 'ControlTableName', {
      value: this.controlPlane.table.table.tableName,
      description: 'The control plane table: `mailbridge keys create --aws` writes the first API key there',
    });
    new CfnOutput(this, 'DashboardUrl', { value: this.monitoring.dashboardUrl });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.monitoring.topic.topicArn });
    new CfnOutput(this, 'BucketName', { value: this.storage.bucket.bucketName });
    new CfnOutput(this, 'InboundQueueName', { value: this.queues.inbound.queueName });
    new CfnOutput(this, 'InboundDlqName', { value: this.queues.inboundDlq.queueName });
    new CfnOutput(this, 'DeliveryQueueName', { value: this.queues.delivery.queueName });
    new CfnOutput(this, 'DeliveryDlqName', { value: this.queues.deliveryDlq.queueName });
  }
}

function toFunctionOptions(settings: Deployment['settings']['functions']['parse']) {
  return {
    memorySize: settings.memoryMiB,
    batchSize: settings.batchSize,
    reservedConcurrency: settings.reservedConcurrency,
    maxConcurrency: settings.maxConcurrency,
  };
}
