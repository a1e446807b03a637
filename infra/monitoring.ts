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
import { Operation } from 'aws-cdk-lib/aws-dynamodb';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { UnavailableReason } from '../core/filtering/index.ts';
import {
  CONTROL_METRIC_SERVICES,
  type ControlMetricName,
  METRIC_SERVICES,
  METRICS,
  METRICS_NAMESPACE,
  type MetricName,
  type MetricService,
} from '../core/index.ts';
import type { ControlPlane } from './control-plane.ts';
import type { ListenerService } from './listener-service.ts';

/** The DynamoDB operations the parts call on the control table (core/control/dynamodb-store.ts). */
const CONTROL_TABLE_OPERATIONS = [
  Operation.GET_ITEM,
  Operation.BATCH_GET_ITEM,
  Operation.QUERY,
  Operation.PUT_ITEM,
  Operation.UPDATE_ITEM,
  Operation.DELETE_ITEM,
  Operation.BATCH_WRITE_ITEM,
];

/** Reasons a scanner gives no verdict by design, not because it is down: the message is too large, or the scanner is off. */
const EXPECTED_UNAVAILABLE: readonly UnavailableReason[] = ['too_large', 'disabled'];

export interface MonitoringProps {
  readonly listener: ListenerService;
  readonly inboundQueue: IQueue;
  readonly inboundDlq: IQueue;
  readonly deliveryQueue: IQueue;
  readonly deliveryDlq: IQueue;
  readonly parseFunction: IFunction;
  readonly deliverFunction: IFunction;
  /** The control plane: its API, function and table, and the message log the parts write. */
  readonly controlPlane: ControlPlane;
  /**
   * Messages quarantined in an hour that raise an alarm (with scanner sidecars only).
   * @default 100
   */
  readonly quarantinedPerHour?: number;
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

    const emf = <S extends MetricService>(service: S, metricName: MetricName<S>, statistic = 'Sum') =>
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { service: METRIC_SERVICES[service] },
        statistic,
        period: Duration.minutes(1),
      });
    /** A control plane metric, summed over the parts that emit it. */
    const control = (metricName: ControlMetricName, period = Duration.minutes(1)) =>
      new MathExpression({
        label: metricName,
        expression: CONTROL_METRIC_SERVICES.map((service) => `FILL(${service}, 0)`).join(' + '),
        usingMetrics: Object.fromEntries(
          CONTROL_METRIC_SERVICES.map((service) => [
            service,
            new Metric({
              namespace: METRICS_NAMESPACE,
              metricName,
              dimensionsMap: { service: METRIC_SERVICES[service] },
              statistic: 'Sum',
              period,
            }),
          ]),
        ),
        period,
      });
    /** Every series of a metric, one per value of its dimensions (dashboards only: alarms cannot search). */
    const search = (metricName: string, dimensions: readonly string[], service?: MetricService) =>
      new MathExpression({
        label: metricName,
        expression: `SEARCH('{${METRICS_NAMESPACE},${[...dimensions, 'service'].sort().join(',')}} MetricName="${metricName}"${service ? ` service="${METRIC_SERVICES[service]}"` : ''}', 'Sum', 60)`,
        period: Duration.minutes(1),
      });
    /** One listener metric summed over all its dimension values (a Metrics Insights query, which alarms accept). */
    const listenerTotal = (metricName: MetricName<'listener'>, period: Duration, where = '') =>
      new MathExpression({
        label: metricName,
        expression: `SELECT SUM(${metricName}) FROM SCHEMA("${METRICS_NAMESPACE}", ${[...METRICS.listener[metricName], 'service'].join(', ')}) WHERE service = '${METRIC_SERVICES.listener}'${where}`,
        period,
      });
    const queueDepth = (queue: IQueue) =>
      queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) });
    const oldest = (queue: IQueue) =>
      queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(1) });
    // Every target group checks the same /healthz of the same tasks, so one group's counts are the
    // tasks' (an alarm pays for each metric it reads: docs/cost.md).
    const [healthGroup] = listener.targetGroups;
    const targetHosts = (healthy: boolean) =>
      healthy
        ? healthGroup!.metrics.healthyHostCount({
            label: 'healthy tasks',
            statistic: 'Minimum',
            period: Duration.minutes(1),
          })
        : healthGroup!.metrics.unHealthyHostCount({
            label: 'unhealthy tasks',
            statistic: 'Maximum',
            period: Duration.minutes(1),
          });

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
      'ListenerBelowMinimumTasks',
      `Fewer than ${listener.minCount} listener tasks (listener.tasks) pass their health check, for 10 minutes.`,
      targetHosts(true),
      listener.minCount,
      // No data at all means the load balancer sees no target: that is not health.
      {
        comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 10,
        missing: TreatMissingData.BREACHING,
      },
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
      ['Api', props.controlPlane.function],
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
    const { controlPlane } = props;
    const { table } = controlPlane.table;
    const fiveMinutes = Duration.minutes(5);
    alarm(
      'ApiServerErrors',
      'The control plane API answered 5xx: the function failed or timed out, or the table or Secrets Manager failed it.',
      controlPlane.apiMetric('5xx', 'Sum', fiveMinutes),
      1,
    );
    alarm(
      'ApiThrottled',
      'API Gateway answered 429: clients asked for more than the API rate or burst limit.',
      emf('api', 'throttled').with({ period: fiveMinutes }),
      1,
    );
    // The table's own throttle events, two metrics; a sum over its operations would read seven.
    // DynamoDB's 500s need no alarm of their own: the writers retry them, and ControlLogWriteFailures
    // and ApiServerErrors fire when they last.
    alarm(
      'ControlTableThrottled',
      'DynamoDB throttled requests to the control table (on-demand: a burst beyond twice the previous peak, or an account limit).',
      new MathExpression({
        label: 'read + write throttle events',
        expression: 'FILL(reads, 0) + FILL(writes, 0)',
        usingMetrics: {
          reads: table.metric('ReadThrottleEvents', { statistic: 'Sum', period: fiveMinutes }),
          writes: table.metric('WriteThrottleEvents', { statistic: 'Sum', period: fiveMinutes }),
        },
        period: fiveMinutes,
      }),
      1,
    );
    alarm(
      'ControlLogWriteFailures',
      'Message log writes have failed for 5 minutes in a row; the writers keep retrying, mail is not affected.',
      control('ControlLogWriteFailures'),
      1,
      { evaluationPeriods: 5 },
    );
    alarm(
      'ControlLogDropped',
      'Message log events were dropped: a writer held as many as it may while the table kept failing.',
      control('ControlLogDropped', fiveMinutes),
      1,
    );
    alarm(
      'ControlLogRejected',
      'The control table refused message log writes for good (an IAM denial, or an item over 400 KB): those events are missing from the log; mail is not affected.',
      control('ControlLogRejected', fiveMinutes),
      1,
    );
    alarm(
      'RouteSyncFailing',
      'Reading route and domain changes has failed for 3 minutes in a row: API changes are not in force at RCPT or in parse.',
      control('RouteSyncFailures'),
      1,
      { evaluationPeriods: 3 },
    );
    const scanning = Boolean(listener.scanners.rspamd || listener.scanners.clamav);
    if (scanning) {
      alarm(
        'ScannerUnavailable',
        'A scanner sidecar gave no verdict (down, timing out or at its concurrency cap) for 10 minutes; mail is delivered or held per route as `unavailable`.',
        listenerTotal(
          'scanner_unavailable',
          fiveMinutes,
          EXPECTED_UNAVAILABLE.map((reason) => ` AND reason != '${reason}'`).join(''),
        ),
        5,
        { evaluationPeriods: 2 },
      );
      const quarantinedPerHour = props.quarantinedPerHour ?? 100;
      alarm(
        'QuarantineGrowing',
        `More than ${quarantinedPerHour} messages were quarantined in an hour: stored, not delivered, waiting for review.`,
        listenerTotal('quarantined', Duration.hours(1)),
        quarantinedPerHour,
        { comparison: ComparisonOperator.GREATER_THAN_THRESHOLD },
      );
    }
    this.alarms = alarms;

    const rejectedByReason = search('rejected', METRICS.listener.rejected, 'listener');
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
        [listener.sessionUsage().with({ label: 'sessions in use, % of maxConnections' })],
      ),
      graph('Accepted / rejected by reason', [emf('listener', 'accepted'), rejectedByReason]),
      graph('Bytes', [emf('listener', 'bytes')], [nlb.processedBytes({ statistic: 'Sum' })]),
    );
    this.dashboard.addWidgets(
      graph('Listener S3 / SQS failures', [emf('listener', 's3_failures'), emf('listener', 'sqs_failures')]),
      graph('Tasks', [targetHosts(true), targetHosts(false)]),
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
        search('dead_lettered', METRICS.deliver.dead_lettered, 'deliver'),
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
    this.dashboard.addWidgets(new TextWidget({ markdown: '## Control plane API', width: 24, height: 1 }));
    this.dashboard.addWidgets(
      graph('API requests', [
        controlPlane.apiMetric('Count', 'Sum'),
        controlPlane.apiMetric('4xx', 'Sum'),
        controlPlane.apiMetric('5xx', 'Sum'),
        emf('api', 'throttled'),
      ]),
      graph('API latency (ms)', [
        controlPlane.apiMetric('Latency', 'p50'),
        controlPlane.apiMetric('Latency', 'p99'),
        controlPlane.apiMetric('IntegrationLatency', 'p99'),
      ]),
      graph(
        'API function errors / throttles',
        [controlPlane.function.metricErrors(), controlPlane.function.metricThrottles()],
        [controlPlane.function.metricDuration({ statistic: 'p99' })],
      ),
    );
    this.dashboard.addWidgets(new TextWidget({ markdown: '## Message log', width: 24, height: 1 }));
    this.dashboard.addWidgets(
      graph('Log writes failed / dropped, refusals not logged', [
        search('ControlLogWriteFailures', []),
        search('ControlLogDropped', []),
        search('RefusalsSampledOut', []),
      ]),
      graph('Route sync failures', [search('RouteSyncFailures', [])]),
      graph(
        'Control table: capacity used / throttled / errors',
        [
          table.metricConsumedReadCapacityUnits({ statistic: 'Sum', period: Duration.minutes(1) }),
          table.metricConsumedWriteCapacityUnits({ statistic: 'Sum', period: Duration.minutes(1) }),
        ],
        [
          // One graph cannot hold two per-operation sums (their ids collide); throttle events cover throttling.
          table.metric('ReadThrottleEvents', { statistic: 'Sum', period: Duration.minutes(1) }),
          table.metric('WriteThrottleEvents', { statistic: 'Sum', period: Duration.minutes(1) }),
          table.metricSystemErrorsForOperations({ operations: CONTROL_TABLE_OPERATIONS }),
        ],
      ),
    );
    if (scanning) {
      this.dashboard.addWidgets(new TextWidget({ markdown: '## Spam and malware', width: 24, height: 1 }));
      this.dashboard.addWidgets(
        graph(
          'Verdicts by scanner',
          [search('scan_verdicts', METRICS.listener.scan_verdicts, 'listener')],
          [],
          6,
        ),
        graph(
          'Scanner unavailable by reason',
          [search('scanner_unavailable', METRICS.listener.scanner_unavailable, 'listener')],
          [],
          6,
        ),
        graph(
          'Quarantined by reason',
          [search('quarantined', METRICS.listener.quarantined, 'listener')],
          [],
          6,
        ),
        graph(
          'Scan time (ms)',
          [emf('listener', 'scan_ms', 'p50'), emf('listener', 'scan_ms', 'p99')],
          [],
          6,
        ),
      );
    }
  }

  /** The dashboard in the CloudWatch console. */
  public get dashboardUrl(): string {
    const region = Stack.of(this).region;
    return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${this.dashboard.dashboardName}`;
  }
}
