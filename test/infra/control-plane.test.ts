import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  CONTROL_TABLE_KEYS,
  controlTableDefinition,
  MessageLogWriter,
  RouteSync,
} from '../../core/control/index.ts';
import { BUCKET_PREFIXES, createMetrics, newMessageId } from '../../core/index.ts';
import { loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import { buildStack, EXAMPLE_CONFIG, EXAMPLE_SETTINGS, tempDir, writeDeployment } from './helpers.ts';
import { actionsOf, json, type Resource, StackTemplate } from './template.ts';

let stack: MailbridgeStack;
let t: StackTemplate;
let cleanup: () => void;
/** Not the default of 30, so a retention that ignores `storage.rawDays` shows. */
const RAW_DAYS = 45;

/** The Allow statements of a role that touch the control table, by what they allow and where. */
function tableStatements(role: Parameters<StackTemplate['idOf']>[0]) {
  const tableId = t.idOf(stack.controlPlane.table.table);
  return t
    .statementsOfRole(t.idOf(role))
    .filter((statement) => json(statement.Resource).includes(tableId))
    .map((statement) => ({
      actions: actionsOf(statement).sort(),
      resources: [statement.Resource].flat(),
      condition: statement.Condition,
    }));
}

const tableArn = () => ({ 'Fn::GetAtt': [t.idOf(stack.controlPlane.table.table), 'Arn'] });
const leadingKeys = (operator: string, keys: string[]) => ({ [operator]: { 'dynamodb:LeadingKeys': keys } });
const ROUTE_READS = {
  actions: ['dynamodb:GetItem', 'dynamodb:Query'],
  resources: [tableArn],
  condition: () => leadingKeys('ForAllValues:StringEquals', ['ROUTE', 'DOMAIN', 'CHANGE']),
};
const LOG_WRITES = {
  actions: ['dynamodb:BatchWriteItem', 'dynamodb:UpdateItem'],
  resources: [tableArn],
  condition: () => leadingKeys('ForAllValues:StringLike', ['M#*', 'A#*']),
};
const REFUSAL_WRITES = {
  actions: ['dynamodb:BatchWriteItem'],
  resources: [tableArn],
  condition: () => leadingKeys('ForAllValues:StringEquals', ['REFUSALS']),
};
const DUPLICATE_MARKERS = {
  actions: ['dynamodb:GetItem', 'dynamodb:PutItem'],
  resources: [tableArn],
  condition: () => leadingKeys('ForAllValues:StringLike', ['DEDUPE#*']),
};
const expected = (...grants: (typeof ROUTE_READS)[]) =>
  grants.map((grant) => ({
    actions: grant.actions,
    resources: grant.resources.map((make) => make()),
    condition: grant.condition(),
  }));

describe('the control plane in the CDK app', () => {
  before(() => {
    const example = JSON.parse(readFileSync(EXAMPLE_SETTINGS, 'utf8'));
    const dir = tempDir('mailbridge-control-plane-');
    const settings = writeDeployment(
      dir.dir,
      { ...example, config: 'config.yaml', storage: { ...example.storage, rawDays: RAW_DAYS } },
      readFileSync(EXAMPLE_CONFIG, 'utf8'),
    );
    const built = buildStack(loadDeployment(settings), { bundle: false });
    stack = built.stack;
    cleanup = () => {
      built.cleanup();
      dir.cleanup();
    };
    t = new StackTemplate(stack);
  });
  after(() => cleanup());

  describe('table', () => {
    it('has the keys and indexes of controlTableDefinition (the local store is created from it too), on demand, with TTL', () => {
      const [[, table]] = t.ofType('AWS::DynamoDB::GlobalTable') as [[string, Resource]];
      const definition = controlTableDefinition('x');
      assert.deepEqual(table.Properties.KeySchema, definition.KeySchema);
      assert.deepEqual(
        [...table.Properties.AttributeDefinitions].sort((a, b) =>
          a.AttributeName.localeCompare(b.AttributeName),
        ),
        [...definition.AttributeDefinitions!].sort((a, b) =>
          a.AttributeName!.localeCompare(b.AttributeName!),
        ),
      );
      assert.deepEqual(
        table.Properties.GlobalSecondaryIndexes,
        definition.GlobalSecondaryIndexes!.map(({ IndexName, KeySchema, Projection }) => ({
          IndexName,
          KeySchema,
          Projection,
        })),
      );
      assert.equal(table.Properties.BillingMode, definition.BillingMode);
      assert.deepEqual(table.Properties.TimeToLiveSpecification, {
        AttributeName: CONTROL_TABLE_KEYS.ttlAttribute,
        Enabled: true,
      });
    });

    it('is encrypted by a key DynamoDB owns, has point-in-time recovery and deletion protection, and is kept unless its first create fails', () => {
      const [[, table]] = t.ofType('AWS::DynamoDB::GlobalTable') as [[string, Resource]];
      // SSE off in CloudFormation's terms means encrypted by the key DynamoDB owns.
      assert.deepEqual(table.Properties.SSESpecification, { SSEEnabled: false });
      const [replica] = table.Properties.Replicas as Record<string, unknown>[];
      assert.deepEqual(replica!.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true });
      assert.equal(replica!.DeletionProtectionEnabled, true);
      assert.equal(table.DeletionPolicy, 'RetainExceptOnCreate');
      assert.equal(table.UpdateReplacePolicy, 'Retain');
    });
  });

  describe('API', () => {
    it('sends every request to the API function (payload 2.0) on an auto-deployed $default stage, throttled as the settings say', () => {
      const [[, api]] = t.ofType('AWS::ApiGatewayV2::Api') as [[string, Resource]];
      assert.equal(api.Properties.ProtocolType, 'HTTP');
      const [[, route]] = t.ofType('AWS::ApiGatewayV2::Route') as [[string, Resource]];
      assert.equal(route.Properties.RouteKey, '$default');
      assert.equal(route.Properties.AuthorizationType, 'NONE', 'the function checks the Bearer API key');
      const [[integrationId, integration]] = t.ofType('AWS::ApiGatewayV2::Integration') as [
        [string, Resource],
      ];
      assert.deepEqual(route.Properties.Target, {
        'Fn::Join': ['', ['integrations/', { Ref: integrationId }]],
      });
      assert.equal(integration.Properties.IntegrationType, 'AWS_PROXY');
      assert.equal(integration.Properties.PayloadFormatVersion, '2.0');
      assert.deepEqual(integration.Properties.IntegrationUri, {
        'Fn::GetAtt': [t.idOf(stack.controlPlane.function), 'Arn'],
      });
      const [[, stage]] = t.ofType('AWS::ApiGatewayV2::Stage') as [[string, Resource]];
      assert.equal(stage.Properties.StageName, '$default');
      assert.equal(stage.Properties.AutoDeploy, true);
      assert.deepEqual(stage.Properties.DefaultRouteSettings, {
        ThrottlingBurstLimit: 100,
        ThrottlingRateLimit: 50,
      });
    });

    it('writes a JSON access log line per request, and counts its 429s as the metric mailbridge/throttled of service api', () => {
      const [[, stage]] = t.ofType('AWS::ApiGatewayV2::Stage') as [[string, Resource]];
      const settings = stage.Properties.AccessLogSettings as { DestinationArn: unknown; Format: string };
      assert.deepEqual(settings.DestinationArn, {
        'Fn::GetAtt': [t.idOf(stack.controlPlane.accessLogs), 'Arn'],
      });
      const line = JSON.parse(settings.Format) as Record<string, string>;
      assert.equal(line.requestId, '$context.requestId');
      assert.equal(line.status, '$context.status');
      assert.equal(line.service, 'api');
      const [[, filter]] = t.ofType('AWS::Logs::MetricFilter') as [[string, Resource]];
      assert.deepEqual(filter.Properties.LogGroupName, { Ref: t.idOf(stack.controlPlane.accessLogs) });
      assert.equal(filter.Properties.FilterPattern, '{ $.status = "429" }');
      assert.deepEqual(filter.Properties.MetricTransformations, [
        {
          MetricNamespace: 'mailbridge',
          MetricName: 'throttled',
          MetricValue: '1',
          Dimensions: [{ Key: 'service', Value: '$.service' }],
        },
      ]);
    });

    it('runs the API function on nodejs24.x arm64 with the config location, the table, the retention and the inbound queue (retries), nothing else', () => {
      const fn = t.propertiesOf(stack.controlPlane.function);
      assert.equal(fn.Runtime, 'nodejs24.x');
      assert.deepEqual(fn.Architectures, ['arm64']);
      assert.equal(fn.MemorySize, 512);
      assert.equal(fn.Timeout, 15, 'below the 30 s API Gateway gives an integration');
      assert.equal(fn.VpcConfig, undefined);
      const variables = fn.Environment.Variables as Record<string, unknown>;
      assert.deepEqual(Object.keys(variables).sort(), [
        'MAILBRIDGE_CONFIG',
        'MAILBRIDGE_CONFIG_SHA256',
        'MAILBRIDGE_CONTROL_RETENTION_DAYS',
        'MAILBRIDGE_CONTROL_TABLE',
        'MAILBRIDGE_INBOUND_QUEUE_URL',
        'MAILBRIDGE_RUNTIME',
        'NODE_OPTIONS',
      ]);
      assert.deepEqual(variables.MAILBRIDGE_CONTROL_TABLE, { Ref: t.idOf(stack.controlPlane.table.table) });
      assert.equal(
        variables.MAILBRIDGE_CONTROL_RETENTION_DAYS,
        String(RAW_DAYS),
        "the raw mail's lifecycle (storage.rawDays)",
      );
    });

    it('gives every part that writes the log the retention of storage.rawDays, the days after which raw mail expires', () => {
      const lambdas = t
        .ofType('AWS::Lambda::Function')
        .map(([, fn]) => (fn.Properties.Environment?.Variables ?? {}) as Record<string, unknown>);
      const containers = t
        .ofType('AWS::ECS::TaskDefinition')
        .flatMap(
          ([, task]) =>
            task.Properties.ContainerDefinitions as { Environment?: { Name: string; Value: unknown }[] }[],
        )
        .map((container) => Object.fromEntries((container.Environment ?? []).map((e) => [e.Name, e.Value])));
      const writers = [...lambdas, ...containers].filter((env) => 'MAILBRIDGE_CONTROL_TABLE' in env);
      // The API, parse and deliver functions and the listener.
      assert.ok(writers.length >= 4, `${writers.length} parts with the table`);
      assert.deepEqual(
        writers.map((env) => env.MAILBRIDGE_CONTROL_RETENTION_DAYS),
        writers.map(() => String(RAW_DAYS)),
      );
      const rules = t.propertiesOf(stack.storage.bucket).LifecycleConfiguration.Rules as {
        Prefix?: string;
        ExpirationInDays?: number;
      }[];
      assert.equal(rules.find((rule) => rule.Prefix === BUCKET_PREFIXES.raw)?.ExpirationInDays, RAW_DAYS);
    });

    it('outputs the API URL', () => {
      t.template.hasOutput('ApiUrl', {
        Value: {
          'Fn::Join': [
            '',
            [
              'https://',
              { Ref: t.idOf(stack.controlPlane.api) },
              '.execute-api.',
              { Ref: 'AWS::Region' },
              '.',
              { Ref: 'AWS::URLSuffix' },
              '/v1',
            ],
          ],
        },
      });
      t.template.hasOutput('ControlTableName', { Value: { Ref: t.idOf(stack.controlPlane.table.table) } });
    });
  });

  describe('grants, part by part and partition by partition', () => {
    it('the listener reads routes, domains and changes, writes the message log and refusals', () => {
      const statements = tableStatements(stack.listener.taskDefinition.taskRole);
      assert.deepEqual(statements, expected(ROUTE_READS, LOG_WRITES, REFUSAL_WRITES));
    });

    it('parse and deliver read routes and write the message log, no refusals; parse marks duplicates; deliver reads API routes’ secrets', () => {
      assert.deepEqual(
        tableStatements(stack.functions.parse.role!),
        expected(ROUTE_READS, LOG_WRITES, DUPLICATE_MARKERS),
      );
      assert.deepEqual(tableStatements(stack.functions.deliver.role!), expected(ROUTE_READS, LOG_WRITES));
      const secretsOf = (role: Parameters<StackTemplate['idOf']>[0]) =>
        t
          .statementsOfRole(t.idOf(role))
          .filter((statement) => json(statement.Resource).includes('mailbridge/routes/'));
      const routeSecrets = {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':secretsmanager:',
            { Ref: 'AWS::Region' },
            ':',
            { Ref: 'AWS::AccountId' },
            ':secret:mailbridge/routes/*',
          ],
        ],
      };
      assert.deepEqual(
        secretsOf(stack.functions.deliver.role!).map((s) => [actionsOf(s), s.Resource]),
        [[['secretsmanager:GetSecretValue'], routeSecrets]],
      );
      assert.deepEqual(secretsOf(stack.functions.parse.role!), []);
      assert.deepEqual(secretsOf(stack.listener.taskDefinition.taskRole), []);
    });

    it('the API has the item calls on the table and Query on its indexes, makes and deletes route secrets, reads raw mail to link it, puts a retried message back on the inbound queue, and nothing else', () => {
      const grants = t.grantsOf(t.idOf(stack.controlPlane.function.role!));
      const dynamo = [...grants.keys()].filter((action) => action.startsWith('dynamodb:')).sort();
      // No Scan, no stream reads, no table administration: the store never calls them.
      assert.deepEqual(dynamo, [
        'dynamodb:BatchGetItem',
        'dynamodb:BatchWriteItem',
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ]);
      const table = json({ 'Fn::GetAtt': [t.idOf(stack.controlPlane.table.table), 'Arn'] });
      const indexes = json({
        'Fn::Join': ['', [{ 'Fn::GetAtt': [t.idOf(stack.controlPlane.table.table), 'Arn'] }, '/index/*']],
      });
      for (const action of dynamo) {
        assert.deepEqual(
          grants.get(action)!.sort(),
          action === 'dynamodb:Query' ? [table, indexes] : [table],
          action,
        );
      }
      const others = [...grants.keys()].filter((action) => !action.startsWith('dynamodb:')).sort();
      assert.deepEqual(others, [
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        's3:GetObject',
        'secretsmanager:CreateSecret',
        'secretsmanager:DeleteSecret',
        'secretsmanager:TagResource',
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:SendMessage',
      ]);
      assert.deepEqual(grants.get('sqs:SendMessage'), [
        json({ 'Fn::GetAtt': [t.idOf(stack.queues.inbound), 'Arn'] }),
      ]);
      const bucket = t.idOf(stack.storage.bucket);
      assert.deepEqual(grants.get('s3:GetObject')!.sort(), [
        json({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/config/mailbridge.json']] }),
        json({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/raw/*']] }),
      ]);
      for (const action of ['secretsmanager:CreateSecret', 'secretsmanager:DeleteSecret']) {
        assert.match(json(grants.get(action)), /:secret:mailbridge\/routes\/\*/);
      }
    });
  });

  describe('alarms', () => {
    const alarm = (name: string) =>
      t.ofType('AWS::CloudWatch::Alarm').find(([, a]) => a.Properties.AlarmName === `Mailbridge-${name}`)![1]
        .Properties;
    type Query = {
      Id: string;
      Expression?: string;
      MetricStat?: {
        Metric: { Namespace: string; MetricName: string; Dimensions: unknown };
        Stat: string;
        Period: number;
      };
    };

    it('API 5xx and API throttles (429s), per 5 minutes, to the alarm topic', () => {
      const errors = alarm('ApiServerErrors');
      assert.deepEqual(
        [errors.Namespace, errors.MetricName, errors.Statistic, errors.Period, errors.Threshold],
        ['AWS/ApiGateway', '5xx', 'Sum', 300, 1],
      );
      assert.deepEqual(errors.Dimensions, [
        { Name: 'ApiId', Value: { Ref: t.idOf(stack.controlPlane.api) } },
        { Name: 'Stage', Value: '$default' },
      ]);
      const throttled = alarm('ApiThrottled');
      assert.deepEqual(
        [throttled.Namespace, throttled.MetricName, throttled.Dimensions, throttled.Period],
        ['mailbridge', 'throttled', [{ Name: 'service', Value: 'api' }], 300],
      );
    });

    it('DynamoDB throttles on the table, from its own read and write throttle events (two metrics, not one per operation)', () => {
      const queries = alarm('ControlTableThrottled').Metrics as Query[];
      const read = queries
        .filter((query) => query.MetricStat)
        .map((query) => {
          const dimensions = query.MetricStat!.Metric.Dimensions as { Name: string; Value: unknown }[];
          assert.deepEqual(dimensions, [
            { Name: 'TableName', Value: { Ref: t.idOf(stack.controlPlane.table.table) } },
          ]);
          return query.MetricStat!.Metric.MetricName;
        })
        .sort();
      assert.deepEqual(read, ['ReadThrottleEvents', 'WriteThrottleEvents']);
    });

    it('message log writes failing for 5 minutes, events dropped or refused for good, route sync failing for 3 minutes: summed over the parts that emit them', () => {
      for (const [name, metric, periods] of [
        ['ControlLogWriteFailures', 'ControlLogWriteFailures', 5],
        ['ControlLogDropped', 'ControlLogDropped', 1],
        ['ControlLogRejected', 'ControlLogRejected', 1],
        ['RouteSyncFailing', 'RouteSyncFailures', 3],
      ] as const) {
        const properties = alarm(name);
        assert.equal(properties.EvaluationPeriods, periods, name);
        const queries = properties.Metrics as Query[];
        assert.equal(
          queries.find((query) => query.Expression)!.Expression,
          'FILL(listener, 0) + FILL(parse, 0) + FILL(deliver, 0) + FILL(api, 0)',
        );
        for (const service of ['listener', 'parse', 'deliver', 'api']) {
          const stat = queries.find((query) => query.Id === service)!.MetricStat!;
          assert.deepEqual(stat.Metric, {
            Namespace: 'mailbridge',
            MetricName: metric,
            Dimensions: [{ Name: 'service', Value: service }],
          });
          assert.equal(stat.Stat, 'Sum');
        }
      }
    });

    it('watch the metric names core/control really emits, with the service dimension of the part running it', async () => {
      // EMF as Powertools writes it, captured from the console.
      process.env.POWERTOOLS_METRICS_DISABLED = 'false';
      process.env.POWERTOOLS_DEV = 'true';
      const lines: string[] = [];
      const log = console.log;
      console.log = (line: string) => void lines.push(line);
      try {
        const metrics = createMetrics('listener');
        const failing = async () => {
          throw Object.assign(new Error('Throughput exceeds the current capacity'), {
            name: 'ProvisionedThroughputExceededException',
          });
        };
        const writer = new MessageLogWriter(
          { appendEvents: failing, putRefusals: failing },
          { metrics, maxPending: 1, batchDelayMs: 1, retryBaseMs: 1, retryMaxMs: 1 },
        );
        const event = {
          at: new Date().toISOString(),
          type: 'received' as const,
          mailFrom: 'a@b.example',
          rcptTo: ['c@d.example'],
          size: 1,
          remoteAddress: '192.0.2.1',
          helo: 'b.example',
          tls: false,
        };
        writer.record(newMessageId(), event);
        writer.record(newMessageId(), event);
        await writer.close(50);
        const sync = new RouteSync(
          { domains: [], routes: [] },
          {
            pageRoutes: async () => ({ items: [], nextCursor: null }),
            listDomains: async () => [],
            changesSince: failing,
          },
          { metrics },
        );
        await sync.reload();
        await sync.poll();
        metrics.publishStoredMetrics();
      } finally {
        console.log = log;
      }
      const emitted = new Set<string>();
      for (const line of lines) {
        const emf = JSON.parse(line) as {
          service: string;
          _aws: { CloudWatchMetrics: { Namespace: string; Metrics: { Name: string }[] }[] };
        };
        for (const { Namespace, Metrics } of emf._aws.CloudWatchMetrics)
          for (const { Name } of Metrics) emitted.add(`${Namespace}/${Name} service=${emf.service}`);
      }
      for (const [name, metric] of [
        ['ControlLogWriteFailures', 'ControlLogWriteFailures'],
        ['ControlLogDropped', 'ControlLogDropped'],
        ['RouteSyncFailing', 'RouteSyncFailures'],
      ]) {
        const watched = (alarm(name!).Metrics as Query[]).find((query) => query.Id === 'listener')!
          .MetricStat!.Metric;
        assert.ok(
          emitted.has(`${watched.Namespace}/${watched.MetricName} service=listener`),
          `${metric}: ${[...emitted]}`,
        );
      }
    });
  });
});
