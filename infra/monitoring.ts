import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE } from '../core/index.ts';
import type { ListenerService } from './listener-service.ts';

/** The `service` dimension Powertools adds to each part's EMF metrics (its serviceName). */
export const METRIC_SERVICES = { listener: 'listener', parse: 'parse', deliver: 'deliver' } as const;

/** The EMF metric names each part emits in the `mailbridge` namespace. */
export const METRIC_NAMES = {
  listener: ['connections', 'accepted', 'rejected', 'bytes', 's3_failures', 'sqs_failures'],
  parse: ['parse_errors'],
  deliver: ['delivered', 'retried', 'dead_lettered', 'delivery_latency', 'parked', 'endpoint_disabled'],
} as const;

export interface MonitoringProps {
  readonly listener: ListenerService;
  readonly inboundQueue: IQueue;
  readonly inboundDlq: IQueue;
  readonly deliveryQueue: IQueue;
  readonly deliveryDlq: IQueue;
  readonly parseFunction: IFunction;
  readonly deliverFunction: IFunction;
  /**
   * Subscribed to the alarm topic (the address must confirm the subscription).
   * @default - no subscription; subscribe to the topic yourself
   */
  readonly alarmEmail?: string;
  /**
   * Oldest inbound message age that raises an alarm: parse is not keeping up or is failing.
   * @default Duration.minutes(15)
   */
  readonly inboundMaxAge?: Duration;
  /**
   * Oldest delivery job age (not counting jobs waiting for a retry) that raises an alarm.
   * @default Duration.hours(1)
   */
  readonly deliveryMaxAge?: Duration;
  /**
   * Age of the oldest DLQ entry that raises an alarm again: DLQs keep entries 14 days, and the
   * "not empty" alarm fires only when the first one arrives.
   * @default Duration.days(7)
   */
  readonly dlqMaxAge?: Duration;
  /**
   * Hours without a single accepted message that raise an alarm (1-24): a broken MX record or
   * listener receives nothing and emits no metric. `null`: no such alarm.
   * @default 24
   */
  readonly nothingAcceptedHours?: number | null;
}

/**
 * The dashboard, the alarms and their SNS topic (KMS-encrypted with a key CloudWatch may use).
 * Each alarm is explained in docs/operations.md under its id.
 */
export class Monitoring extends Construct {
  public readonly topic: Topic;
  public readonly dashboard: Dashboard;
  /** Alarms by id, e.g. `InboundDlqNotEmpty`. */
  public readonly alarms: Readonly<Record<string, Alarm>>;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { listener } = props;
    const stackName = Stack.of(this).stackName;

    // CloudWatch can't publish to a topic encrypted with the AWS-managed SNS key; a key of our own lets it.
    const key = new Key(this, 'TopicKey', {
      enableKeyRotation: true,
      description: 'mailbridge alarm topic',
      // Not RETAIN (a key's default): each failed first deploy would leave a key behind, billed monthly.
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    key.grant(new ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.topic = new Topic(this, 'AlarmTopic', {
      masterKey: key,
      enforceSSL: true,
      displayName: 'mailbridge alarms',
    });
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));
    const action = new SnsAction(this.topic);

    const emf = (service: keyof typeof METRIC_SERVICES, metricName: string, statistic = 'Sum') =>
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { service: METRIC_SERVICES[service] },
        statistic,
        period: Duration.minutes(1),
      });
    const queueDepth = (queue: IQueue) =>
      queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) });
    const oldest = (queue: IQueue) =>
      queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(1) });
    /** Worst target group: most unhealthy tasks, or fewest healthy ones (all share one health check). */
    const targetHosts = (healthy: boolean) => {
      const perGroup = Object.fromEntries(
        listener.targetGroups.map((group, i) => [
          `${healthy ? 'healthy' : 'unhealthy'}${i}`,
          healthy
            ? group.metrics.healthyHostCount({ statistic: 'Minimum', period: Duration.minutes(1) })
            : group.metrics.unHealthyHostCount({ statistic: 'Maximum', period: Duration.minutes(1) }),
        ]),
      );
      return new MathExpression({
        label: healthy ? 'healthy tasks' : 'unhealthy tasks',
        expression: `${healthy ? 'MIN' : 'MAX'}([${Object.keys(perGroup).join(',')}])`,
        usingMetrics: perGroup,
        period: Duration.minutes(1),
      });
    };

    const alarms: Record<string, Alarm> = {};
    const alarm = (
      alarmId: string,
      description: string,
      metric: IMetric,
      threshold: number,
      options: {
        evaluationPeriods?: number;
        comparison?: ComparisonOperator;
        missing?: TreatMissingData;
      } = {},
    ) => {
      const created = new Alarm(this, alarmId, {
        alarmName: `${stackName}-${alarmId}`,
        alarmDescription: `${description} See docs/operations.md#${alarmId.toLowerCase()}.`,
        metric,
        threshold,
        evaluationPeriods: options.evaluationPeriods ?? 1,
        comparisonOperator: options.comparison ?? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: options.missing ?? TreatMissingData.NOT_BREACHING,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      alarms[alarmId] = created;
    };

    alarm(
      'InboundDlqNotEmpty',
      'Accepted mail that parse failed on 5 times is in the inbound DLQ.',
      queueDepth(props.inboundDlq),
      1,
    );
    alarm(
      'DeliveryDlqNotEmpty',
      'Webhook deliveries that exhausted their retries or failed permanently are in the delivery DLQ.',
      queueDepth(props.deliveryDlq),
      1,
    );
    const dlqMaxAge = (props.dlqMaxAge ?? Duration.days(7)).toSeconds();
    for (const [label, dlq] of [
      ['Inbound', props.inboundDlq],
      ['Delivery', props.deliveryDlq],
    ] as const) {
      alarm(
        `${label}DlqOldestMessage`,
        `An entry has been in the ${label.toLowerCase()} DLQ for ${dlqMaxAge / 86400} days; SQS deletes it at 14.`,
        dlq.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(5) }),
        dlqMaxAge,
      );
    }
    alarm(
      'DeliveryEndpointDisabled',
      "An endpoint was disabled (410 Gone, or every try failed for the route's disableAfter) or jobs for a disabled one were parked.",
      new MathExpression({
        label: 'endpoints disabled + jobs parked',
        expression: 'FILL(disabled, 0) + FILL(parked, 0)',
        usingMetrics: { disabled: emf('deliver', 'endpoint_disabled'), parked: emf('deliver', 'parked') },
        period: Duration.minutes(1),
      }),
      1,
    );
    alarm(
      'InboundQueueOldestMessage',
      'Accepted mail is waiting to be parsed for too long.',
      oldest(props.inboundQueue),
      (props.inboundMaxAge ?? Duration.minutes(15)).toSeconds(),
      { evaluationPeriods: 5 },
    );
    alarm(
      'DeliveryQueueOldestMessage',
      'Webhook jobs are waiting for their first delivery for too long.',
      oldest(props.deliveryQueue),
      (props.deliveryMaxAge ?? Duration.hours(1)).toSeconds(),
      { evaluationPeriods: 5 },
    );
    alarm('ListenerUnhealthyTargets', 'A listener task fails its /healthz check.', targetHosts(false), 1, {
      evaluationPeriods: 3,
    });
    alarm(
      'ListenerNoHealthyTargets',
      'No listener task is healthy: sending servers cannot deliver mail.',
      targetHosts(true),
      1,
      {
        comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        missing: TreatMissingData.BREACHING,
      },
    );
    alarm(
      'ListenerBelowDesiredTasks',
      'Fewer listener tasks pass their health check than the service wants, for 10 minutes.',
      new MathExpression({
        label: 'desired - healthy tasks',
        expression: 'desired - FILL(healthy, 0)',
        usingMetrics: { desired: listener.taskCount('DesiredTaskCount'), healthy: targetHosts(true) },
        period: Duration.minutes(1),
      }),
      1,
      // No data at all means Container Insights sees no service: that is not health.
      { evaluationPeriods: 10, missing: TreatMissingData.BREACHING },
    );
    const nothingAcceptedHours = props.nothingAcceptedHours === undefined ? 24 : props.nothingAcceptedHours;
    if (nothingAcceptedHours !== null) {
      if (!Number.isInteger(nothingAcceptedHours) || nothingAcceptedHours < 1 || nothingAcceptedHours > 24) {
        // CloudWatch evaluates at most one day of data.
        throw new Error(`${this.node.path}: nothingAcceptedHours ${nothingAcceptedHours}: 1 to 24`);
      }
      alarm(
        'ListenerNothingAccepted',
        `No message was accepted for ${nothingAcceptedHours} hours.`,
        emf('listener', 'accepted').with({ period: Duration.hours(nothingAcceptedHours) }),
        1,
        // The listener emits nothing when it accepts nothing: missing data is the failure.
        { comparison: ComparisonOperator.LESS_THAN_THRESHOLD, missing: TreatMissingData.BREACHING },
      );
    }
    for (const [label, fn] of [
      ['Parse', props.parseFunction],
      ['Deliver', props.deliverFunction],
    ] as const) {
      alarm(
        `${label}FunctionErrors`,
        `The ${label.toLowerCase()} function failed whole invocations (crash, timeout).`,
        fn.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        1,
      );
      alarm(
        `${label}FunctionThrottles`,
        `The ${label.toLowerCase()} function was throttled.`,
        fn.metricThrottles({ period: Duration.minutes(5), statistic: 'Sum' }),
        1,
      );
    }
    alarm(
      'ListenerS3Failures',
      'The listener could not store messages in S3 and answered 451 (senders retry).',
      emf('listener', 's3_failures'),
      1,
    );
    alarm(
      'ListenerSqsFailures',
      'The listener could not queue stored messages and answered 451 (senders retry).',
      emf('listener', 'sqs_failures'),
      1,
    );
    this.alarms = alarms;

    const rejectedByReason = new MathExpression({
      label: 'rejected',
      expression: `SEARCH('{${METRICS_NAMESPACE},reason,service} MetricName="rejected" service="${METRIC_SERVICES.listener}"', 'Sum', 60)`,
      period: Duration.minutes(1),
    });
    const graph = (title: string, left: IMetric[], right: IMetric[] = [], width = 8) =>
      new GraphWidget({ title, left, right, width, height: 6 });
    const nlb = listener.loadBalancer.metrics;

    this.dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    this.dashboard.addWidgets(new TextWidget({ markdown: '## SMTP listener', width: 24, height: 1 }));
    this.dashboard.addWidgets(
      graph(
        'Connections',
        [
          nlb.activeFlowCount({ statistic: 'Average' }),
          nlb.newFlowCount({ statistic: 'Sum' }),
          emf('listener', 'connections'),
        ],
        [listener.connectionsPerTask()],
      ),
      graph('Accepted / rejected by reason', [emf('listener', 'accepted'), rejectedByReason]),
      graph('Bytes', [emf('listener', 'bytes')], [nlb.processedBytes({ statistic: 'Sum' })]),
    );
    this.dashboard.addWidgets(
      graph('Listener S3 / SQS failures', [emf('listener', 's3_failures'), emf('listener', 'sqs_failures')]),
      graph('Tasks', [
        listener.taskCount('DesiredTaskCount'),
        listener.taskCount('RunningTaskCount'),
        targetHosts(true),
        targetHosts(false),
      ]),
      graph('Tasks CPU / memory %', [
        listener.service.metricCpuUtilization(),
        listener.service.metricMemoryUtilization(),
      ]),
    );
    this.dashboard.addWidgets(new TextWidget({ markdown: '## Queues', width: 24, height: 1 }));
    this.dashboard.addWidgets(
      graph('Queue depth', [queueDepth(props.inboundQueue), queueDepth(props.deliveryQueue)]),
      graph('Oldest message age (s)', [oldest(props.inboundQueue), oldest(props.deliveryQueue)]),
      graph(
        'DLQ depth / oldest entry (s)',
        [queueDepth(props.inboundDlq), queueDepth(props.deliveryDlq)],
        [oldest(props.inboundDlq), oldest(props.deliveryDlq)],
      ),
    );
    this.dashboard.addWidgets(new TextWidget({ markdown: '## Parse and deliver', width: 24, height: 1 }));
    this.dashboard.addWidgets(
      graph('Parse errors', [
        emf('parse', 'parse_errors'),
        props.parseFunction.metricErrors(),
        props.parseFunction.metricThrottles(),
      ]),
      graph('Delivery outcomes', [
        emf('deliver', 'delivered'),
        emf('deliver', 'retried'),
        emf('deliver', 'dead_lettered'),
        emf('deliver', 'parked'),
        emf('deliver', 'endpoint_disabled'),
      ]),
      graph('Delivery latency (ms)', [
        emf('deliver', 'delivery_latency', 'p50'),
        emf('deliver', 'delivery_latency', 'p99'),
      ]),
    );
    this.dashboard.addWidgets(
      graph(
        'Function duration (ms)',
        [
          props.parseFunction.metricDuration({ statistic: 'p99' }),
          props.deliverFunction.metricDuration({ statistic: 'p99' }),
        ],
        [],
        12,
      ),
      graph(
        'Deliver errors / throttles',
        [props.deliverFunction.metricErrors(), props.deliverFunction.metricThrottles()],
        [],
        12,
      ),
    );
  }

  /** The dashboard in the CloudWatch console. */
  public get dashboardUrl(): string {
    const region = Stack.of(this).region;
    return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${this.dashboard.dashboardName}`;
  }
}
