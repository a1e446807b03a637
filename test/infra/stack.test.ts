import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { DEPLOYMENT } from '../../bench/cost-model.ts';
import { CONTROL_METRICS, METRICS, METRICS_NAMESPACE, QUEUE_SETTINGS } from '../../core/index.ts';
import { loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import { healthCheckCommand } from '../../listener/healthcheck.ts';
import { buildStack, EXAMPLE_CONFIG, EXAMPLE_SETTINGS, tempDir, writeDeployment } from './helpers.ts';
import { actionsOf, json, type Resource, StackTemplate, type Statement } from './template.ts';

let stack: MailbridgeStack;
let t: StackTemplate;
let template: Template;
let resources: Record<string, Resource>;
let cleanup: () => void;
let outdir: string;

const ofType = (type: string) => t.ofType(type);
const statementsOfRole = (roleId: string) => t.statementsOfRole(roleId);
const grantsOf = (roleId: string) => t.grantsOf(roleId);
const roleIdOf = (construct: IConstruct) => t.idOf(construct);

const bucketId = () => stack.getLogicalId(stack.storage.bucket.node.defaultChild as never);
const queueId = (queue: IConstruct) => stack.getLogicalId(queue.node.defaultChild as never);

describe('the CDK app (example settings, synthesized offline without Docker)', () => {
  before(() => {
    const built = buildStack(loadDeployment(EXAMPLE_SETTINGS));
    stack = built.stack;
    cleanup = built.cleanup;
    outdir = built.app.outdir;
    t = new StackTemplate(stack);
    template = t.template;
    resources = t.resources;
  });
  after(() => cleanup());

  describe('network load balancer', () => {
    it('listens on TCP 25, 465, 587 and 2525, each forwarded to the config listener of that mode', () => {
      const listeners = ofType('AWS::ElasticLoadBalancingV2::Listener').map(([, l]) => l.Properties);
      assert.deepEqual(
        listeners.map((l) => l.Port).sort((a, b) => Number(a) - Number(b)),
        [25, 465, 587, 2525],
      );
      for (const listener of listeners) assert.equal(listener.Protocol, 'TCP');
      const targetPorts = Object.fromEntries(
        listeners.map((listener) => {
          const groupRef = json(listener.DefaultActions).match(/"Ref":"(\w+)"/)![1]!;
          return [listener.Port, resources[groupRef]!.Properties.Port];
        }),
      );
      assert.deepEqual(targetPorts, { 25: 2525, 465: 2465, 587: 2587, 2525: 2587 });
    });

    it('checks target health over HTTP GET /healthz on port 8080, preserves client IPs and drains for closeTimeout', () => {
      const groups = ofType('AWS::ElasticLoadBalancingV2::TargetGroup');
      assert.equal(groups.length, 4);
      for (const [, group] of groups) {
        assert.equal(group.Properties.Protocol, 'TCP');
        assert.equal(group.Properties.TargetType, 'ip');
        assert.equal(group.Properties.HealthCheckProtocol, 'HTTP');
        assert.equal(group.Properties.HealthCheckPort, '8080');
        assert.equal(group.Properties.HealthCheckPath, '/healthz');
        const attributes = Object.fromEntries(
          (group.Properties.TargetGroupAttributes as { Key: string; Value: string }[]).map((a) => [
            a.Key,
            a.Value,
          ]),
        );
        assert.equal(attributes['preserve_client_ip.enabled'], 'true');
        assert.equal(attributes['proxy_protocol_v2.enabled'], 'false');
        assert.equal(attributes['deregistration_delay.timeout_seconds'], '60');
      }
    });

    it('is internet-facing with a retained Elastic IP per AZ in SubnetMappings and a security group', () => {
      const [[, nlb]] = ofType('AWS::ElasticLoadBalancingV2::LoadBalancer') as [[string, Resource]];
      assert.equal(nlb.Properties.Scheme, 'internet-facing');
      assert.equal(nlb.Properties.Type, 'network');
      const eips = ofType('AWS::EC2::EIP');
      assert.equal(eips.length, 2);
      for (const [, eip] of eips) assert.equal(eip.DeletionPolicy, 'RetainExceptOnCreate');
      const mappings = nlb.Properties.SubnetMappings as { AllocationId: unknown; SubnetId: unknown }[];
      assert.deepEqual(
        mappings.map((m) => m.AllocationId),
        eips.map(([id]) => ({ 'Fn::GetAtt': [id, 'AllocationId'] })),
      );
      assert.equal((nlb.Properties.SecurityGroups as unknown[]).length, 1);
    });

    it('admits SMTP from anywhere to the NLB, and only the NLB to the tasks (SMTP and health ports)', () => {
      const nlbSg = stack.getLogicalId(stack.listener.loadBalancerSecurityGroup.node.defaultChild as never);
      const nlbRules =
        (resources[nlbSg]!.Properties.SecurityGroupIngress as { CidrIp: string; FromPort: number }[]) ?? [];
      assert.deepEqual(
        nlbRules.map((r) => [r.CidrIp, r.FromPort]).sort((a, b) => Number(a[1]) - Number(b[1])),
        [
          ['0.0.0.0/0', 25],
          ['0.0.0.0/0', 465],
          ['0.0.0.0/0', 587],
          ['0.0.0.0/0', 2525],
        ],
      );
      const taskIngress = ofType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties);
      assert.deepEqual(
        taskIngress.map((r) => Number(r.FromPort)).sort((a, b) => a - b),
        [2465, 2525, 2587, 8080],
      );
      for (const rule of taskIngress) {
        assert.deepEqual(rule.SourceSecurityGroupId, { 'Fn::GetAtt': [nlbSg, 'GroupId'] });
      }
      const taskSg = stack.getLogicalId(stack.listener.securityGroup.node.defaultChild as never);
      assert.deepEqual(resources[taskSg]!.Properties.SecurityGroupEgress, [
        {
          CidrIp: '0.0.0.0/0',
          Description: 'AWS APIs over HTTPS',
          FromPort: 443,
          IpProtocol: 'tcp',
          ToPort: 443,
        },
      ]);
    });
  });

  describe('network', () => {
    it('gives the tasks’ subnets free gateway endpoints to S3 and DynamoDB', () => {
      const routeTables = ofType('AWS::EC2::RouteTable')
        .map(([id]) => id)
        .sort();
      const endpoints = ofType('AWS::EC2::VPCEndpoint').map(([, endpoint]) => endpoint.Properties);
      assert.deepEqual(
        endpoints.map((endpoint) => json(endpoint.ServiceName).match(/\.(s3|dynamodb)"/)?.[1]).sort(),
        ['dynamodb', 's3'],
      );
      for (const endpoint of endpoints) {
        assert.equal(endpoint.VpcEndpointType, 'Gateway');
        assert.deepEqual(
          (endpoint.RouteTableIds as { Ref: string }[]).map((ref) => ref.Ref).sort(),
          routeTables,
        );
      }
    });
  });

  describe('listener service', () => {
    it('runs an ARM64 Fargate task from listener/Dockerfile, logging JSON to CloudWatch, with a stop timeout above closeTimeout', () => {
      const [[, task]] = ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
      assert.deepEqual(task.Properties.RuntimePlatform, {
        CpuArchitecture: 'ARM64',
        OperatingSystemFamily: 'LINUX',
      });
      assert.deepEqual(task.Properties.RequiresCompatibilities, ['FARGATE']);
      const [container] = task.Properties.ContainerDefinitions as Record<string, unknown>[];
      assert.equal(container!.StopTimeout, 75);
      assert.ok((container!.StopTimeout as number) <= 120);
      assert.equal(container!.ReadonlyRootFilesystem, true);
      assert.equal(
        (container!.LinuxParameters as { InitProcessEnabled: boolean }).InitProcessEnabled,
        true,
        'an init is PID 1',
      );
      assert.equal((container!.LogConfiguration as { LogDriver: string }).LogDriver, 'awslogs');
      assert.deepEqual((container!.HealthCheck as { Command: string[] }).Command, [
        'CMD',
        ...healthCheckCommand(8080),
      ]);
      const environment = Object.fromEntries(
        (container!.Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]),
      );
      assert.equal(environment.MAILBRIDGE_RUNTIME, 'aws');
      assert.match(json(environment.MAILBRIDGE_CONFIG), /s3:\/\/.*config\/mailbridge\.json/);
      assert.equal(environment.MAILBRIDGE_CONFIG_SHA256, stack.deployedConfig.sha256);
      assert.ok(environment.MAILBRIDGE_BUCKET && environment.MAILBRIDGE_INBOUND_QUEUE_URL);
      assert.ok(
        stack.node.findAll().some((c) => c.node.path.endsWith('listener/AssetImage')),
        'the image is a Docker asset, built from the repository at deploy time',
      );
    });

    it('keeps at least 2 tasks of 0.25 vCPU / 1 GB, without Container Insights; the task count is left to autoscaling', () => {
      template.hasResourceProperties('AWS::ECS::Cluster', {
        ClusterSettings: [{ Name: 'containerInsights', Value: 'disabled' }],
      });
      const [[, task]] = ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
      assert.deepEqual([task.Properties.Cpu, task.Properties.Memory], ['256', '1024']);
      const [[, service]] = ofType('AWS::ECS::Service') as [[string, Resource]];
      assert.equal(service.Properties.LaunchType, 'FARGATE');
      assert.deepEqual(
        (service.Properties.DeploymentConfiguration as Record<string, unknown>).DeploymentCircuitBreaker,
        { Enable: true, Rollback: true },
      );
      // A DesiredCount in the template resets the running count to it on every deploy that touches the service.
      assert.equal(service.Properties.DesiredCount, undefined);
      template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
        MinCapacity: 2,
        MaxCapacity: 6,
      });
    });

    it('scales by target tracking on CPU and on the share of sessions in use, and nothing else', () => {
      const policies = ofType('AWS::ApplicationAutoScaling::ScalingPolicy').map(([, p]) => p.Properties);
      // Target tracking policies scale in only when all of them agree; a step policy would not wait.
      assert.deepEqual(
        policies.map((policy) => policy.PolicyType),
        ['TargetTrackingScaling', 'TargetTrackingScaling'],
      );
      const configs = policies.map(
        (policy) => policy.TargetTrackingScalingPolicyConfiguration as Record<string, unknown>,
      );
      for (const config of configs) assert.notEqual(config.DisableScaleIn, true);
      const cpu = configs.find((config) => config.PredefinedMetricSpecification)!;
      assert.deepEqual(cpu.PredefinedMetricSpecification, {
        PredefinedMetricType: 'ECSServiceAverageCPUUtilization',
      });
      const sessions = configs.find((config) => config.CustomizedMetricSpecification)!;
      assert.equal(
        sessions.TargetValue,
        50,
        'half of limits.maxConnections (1000 by default) per task, as a share of it',
      );
      assert.deepEqual(sessions.CustomizedMetricSpecification, {
        Namespace: 'mailbridge',
        MetricName: 'session_usage',
        Dimensions: [{ Name: 'service', Value: 'listener' }],
        Statistic: 'Average',
      });
      assert.deepEqual(
        ofType('AWS::CloudWatch::Alarm').filter(([, a]) => json(a.Properties).includes('ActiveFlowCount')),
        [],
        'no step alarm on flows fights the CPU tracking',
      );
    });
  });

  describe('storage', () => {
    it('encrypts the bucket, blocks public access, denies non-TLS requests and is retained', () => {
      const bucket = resources[bucketId()]!;
      assert.equal(bucket.DeletionPolicy, 'RetainExceptOnCreate');
      assert.deepEqual(bucket.Properties.BucketEncryption, {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      });
      assert.deepEqual(bucket.Properties.PublicAccessBlockConfiguration, {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      assert.ok(bucket.Properties.LoggingConfiguration, 'server access logs go to the logs bucket');
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: bucketId() },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });

    it('expires raw mail, payloads, attachments and duplicate markers by prefix and aborts orphan multipart uploads after a day', () => {
      const rules = (
        resources[bucketId()]!.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }
      ).Rules;
      assert.ok(
        rules.some((rule) => json(rule.AbortIncompleteMultipartUpload) === json({ DaysAfterInitiation: 1 })),
      );
      const expiry = Object.fromEntries(
        rules.filter((r) => r.Prefix).map((r) => [r.Prefix, r.ExpirationInDays]),
      );
      assert.deepEqual(expiry, { 'raw/': 30, 'payloads/': 30, 'attachments/': 30 });
    });

    it('writes the config to config/mailbridge.json with a PutObject on that key only', () => {
      const [[, resource]] = ofType('Custom::AWS') as [[string, Resource]];
      const create = json(resource.Properties.Create);
      assert.match(create, /config\/mailbridge\.json/);
      assert.match(create, /putObject/);
      assert.match(create, /mailbridge\/signing\/support/, 'the deployed document is the example config');
      const writerRole = stack.getLogicalId(
        stack.deployedConfig.node.findChild('Role').node.defaultChild as never,
      );
      const grants = grantsOf(writerRole);
      assert.deepEqual(
        [...grants.keys()].filter((a) => a.startsWith('s3:')),
        ['s3:PutObject'],
      );
      assert.match(json(grants.get('s3:PutObject')), /\/config\/mailbridge\.json/);
    });
  });

  describe('queues', () => {
    it('encrypts every queue, denies non-TLS access and redrives to a 14-day DLQ after QUEUE_SETTINGS receives', () => {
      const queues = ofType('AWS::SQS::Queue');
      assert.equal(queues.length, 4);
      for (const [, queue] of queues) assert.equal(queue.Properties.SqsManagedSseEnabled, true);
      const redrive = (queue: IConstruct) => resources[queueId(queue)]!.Properties;
      assert.deepEqual(redrive(stack.queues.inbound).RedrivePolicy, {
        deadLetterTargetArn: { 'Fn::GetAtt': [queueId(stack.queues.inboundDlq), 'Arn'] },
        maxReceiveCount: QUEUE_SETTINGS.inbound.maxReceiveCount,
      });
      assert.deepEqual(redrive(stack.queues.delivery).RedrivePolicy, {
        deadLetterTargetArn: { 'Fn::GetAtt': [queueId(stack.queues.deliveryDlq), 'Arn'] },
        maxReceiveCount: QUEUE_SETTINGS.delivery.maxReceiveCount,
      });
      assert.equal(
        redrive(stack.queues.inbound).VisibilityTimeout,
        QUEUE_SETTINGS.inbound.visibilityTimeoutSeconds,
      );
      assert.equal(redrive(stack.queues.inboundDlq).MessageRetentionPeriod, 14 * 24 * 3600);
      assert.equal(redrive(stack.queues.deliveryDlq).MessageRetentionPeriod, 14 * 24 * 3600);
      const tlsDenies = ofType('AWS::SQS::QueuePolicy').filter(([, p]) =>
        json(p.Properties).includes('"aws:SecureTransport":"false"'),
      );
      assert.equal(tlsDenies.length, 4);
    });
  });

  describe('functions', () => {
    it('run parse and deliver on nodejs24.x arm64, outside the VPC, with the queue timeouts and JSON logs without platform lines', () => {
      const functions = [stack.functions.parse, stack.functions.deliver].map(
        (fn) => resources[stack.getLogicalId(fn.node.defaultChild as never)]!.Properties,
      );
      for (const fn of functions) {
        assert.equal(fn.Runtime, 'nodejs24.x');
        assert.deepEqual(fn.Architectures, ['arm64']);
        assert.equal(fn.Timeout, 60);
        assert.equal(fn.VpcConfig, undefined, 'no VPC: webhook delivery must not reach private addresses');
        assert.deepEqual(
          fn.LoggingConfig,
          {
            LogFormat: 'JSON',
            SystemLogLevel: 'WARN',
            LogGroup: (fn.LoggingConfig as { LogGroup: unknown }).LogGroup,
          },
          "Lambda's START, END and REPORT lines are not ingested (docs/cost.md)",
        );
        const variables = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
        assert.equal(variables.MAILBRIDGE_RUNTIME, 'aws');
        // --enable-source-maps decoded a 10 MB map on the first logged error (≈ 260 ms in parse).
        assert.equal(variables.NODE_OPTIONS, '--max-semi-space-size=1');
        assert.equal(variables.MAILBRIDGE_CONFIG_SHA256, stack.deployedConfig.sha256);
      }
      // Each function gets the names of the resources it was given, no more.
      const names = functions.map((fn) =>
        Object.keys((fn.Environment as { Variables: Record<string, unknown> }).Variables).sort(),
      );
      const common = [
        'MAILBRIDGE_BUCKET',
        'MAILBRIDGE_CONFIG',
        'MAILBRIDGE_CONFIG_SHA256',
        'MAILBRIDGE_CONTROL_RETENTION_DAYS',
        'MAILBRIDGE_CONTROL_TABLE',
        'MAILBRIDGE_RUNTIME',
      ];
      assert.deepEqual(
        names[0],
        [...common, 'MAILBRIDGE_DELIVERY_QUEUE_URL', 'MAILBRIDGE_INBOUND_DLQ_URL', 'NODE_OPTIONS'].sort(),
      );
      assert.deepEqual(
        names[1],
        [...common, 'MAILBRIDGE_DELIVERY_DLQ_URL', 'MAILBRIDGE_DELIVERY_QUEUE_URL', 'NODE_OPTIONS'].sort(),
      );
      assert.equal(functions[0]!.MemorySize, 768);
      assert.equal(functions[1]!.MemorySize, 512);
    });

    it('ship the bundle in each zip, no source map; parse with the charset tables and the unpack worker it loads beside it', () => {
      const zip = (fn: IConstruct) => {
        const code = resources[stack.getLogicalId(fn.node.defaultChild as never)]!.Properties.Code as {
          S3Key: string;
        };
        return join(outdir, `asset.${code.S3Key.replace(/\.zip$/, '')}`);
      };
      for (const fn of [stack.functions.deliver, stack.controlPlane.function])
        assert.deepEqual(readdirSync(zip(fn)), ['index.mjs']);
      const parse = zip(stack.functions.parse);
      assert.deepEqual(readdirSync(parse).sort(), ['index.mjs', 'tables', 'unpack-worker.mjs']);
      // Each table the bundle requires is in the zip: GBK (cp936) and Shift_JIS among them.
      const bundle = readFileSync(join(parse, 'index.mjs'), 'utf8');
      const required = [
        ...new Set([...bundle.matchAll(/"\.\/tables\/([\w-]+\.json)"/g)].map((match) => match[1])),
      ].sort();
      assert.ok(required.includes('cp936.json') && required.includes('shiftjis.json'), required.join());
      assert.deepEqual(readdirSync(join(parse, 'tables')).sort(), required);
    });

    it('trigger from SQS with partial batch responses, the batch sizes and max concurrency of the settings', () => {
      const mappings = ofType('AWS::Lambda::EventSourceMapping').map(([, m]) => m.Properties);
      assert.equal(mappings.length, 2);
      for (const mapping of mappings)
        assert.deepEqual(mapping.FunctionResponseTypes, ['ReportBatchItemFailures']);
      const byQueue = Object.fromEntries(mappings.map((m) => [json(m.EventSourceArn), m]));
      const inbound = byQueue[json({ 'Fn::GetAtt': [queueId(stack.queues.inbound), 'Arn'] })]!;
      const delivery = byQueue[json({ 'Fn::GetAtt': [queueId(stack.queues.delivery), 'Arn'] })]!;
      assert.equal(inbound.BatchSize, 10);
      assert.deepEqual(inbound.ScalingConfig, { MaximumConcurrency: 20 });
      assert.equal(delivery.BatchSize, 3);
      assert.deepEqual(delivery.ScalingConfig, { MaximumConcurrency: 50 });
    });
  });

  describe('least privilege', () => {
    it('grants no wildcard action on the bucket, the queues or the secrets', () => {
      for (const [, policy] of ofType('AWS::IAM::Policy')) {
        for (const statement of (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement) {
          for (const action of actionsOf(statement)) {
            assert.notEqual(action, '*');
            assert.doesNotMatch(action, /^(s3|sqs|secretsmanager):.*\*/, `${action} in ${json(statement)}`);
          }
        }
      }
    });

    it('lets the listener put raw objects, read the config, send to inbound and read its secrets, nothing more', () => {
      const grants = grantsOf(
        stack.getLogicalId(stack.listener.taskDefinition.taskRole.node.defaultChild as never),
      );
      assert.deepEqual([...grants.keys()].sort(), [
        'dynamodb:BatchWriteItem',
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        's3:AbortMultipartUpload',
        's3:GetObject',
        's3:PutObject',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:SendMessage',
      ]);
      assert.deepEqual(grants.get('s3:PutObject'), [
        json({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId(), 'Arn'] }, '/raw/*']] }),
      ]);
      assert.deepEqual(grants.get('s3:GetObject'), [
        json({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId(), 'Arn'] }, '/config/mailbridge.json']] }),
      ]);
      assert.deepEqual(grants.get('sqs:SendMessage'), [
        json({ 'Fn::GetAtt': [queueId(stack.queues.inbound), 'Arn'] }),
      ]);
      const secrets = json(grants.get('secretsmanager:GetSecretValue'));
      assert.match(secrets, /mailbridge\/tls/);
      assert.doesNotMatch(secrets, /signing/, 'the listener cannot read webhook signing secrets');
    });

    it('lets parse read raw mail, write payloads and attachments, dead-letter unrouted mail, but read no secret', () => {
      const grants = grantsOf(roleIdOf(stack.functions.parse.role!));
      assert.equal(grants.has('secretsmanager:GetSecretValue'), false);
      assert.match(json(grants.get('s3:GetObject')), /\/raw\/\*/);
      assert.deepEqual(
        grants
          .get('s3:PutObject')!
          .map((r) => r.match(/\/(\w+)\/\*/)![1])
          .sort(),
        ['attachments', 'payloads'],
      );
      assert.doesNotMatch(json(grants.get('s3:GetObject')), /dedupe/, 'duplicate markers are in the table');
      assert.deepEqual(grants.get('sqs:SendMessage'), [
        json({ 'Fn::GetAtt': [queueId(stack.queues.delivery), 'Arn'] }),
        json({ 'Fn::GetAtt': [queueId(stack.queues.inboundDlq), 'Arn'] }),
      ]);
    });

    it('lets deliver read payloads, raw mail and attachments (to sign links), keep endpoint health, read the signing secrets and dead-letter jobs, nothing more', () => {
      const deliverRole = roleIdOf(stack.functions.deliver.role!);
      const grants = grantsOf(deliverRole);
      assert.deepEqual([...grants.keys()].sort(), [
        'dynamodb:BatchWriteItem',
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'sqs:ChangeMessageVisibility',
        'sqs:DeleteMessage',
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:ReceiveMessage',
        'sqs:SendMessage',
      ]);
      const objects = (keys: string[]) =>
        keys.map((key) => json({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId(), 'Arn'] }, key]] })).sort();
      assert.deepEqual(
        [...grants.get('s3:GetObject')!].sort(),
        objects(['/attachments/*', '/config/mailbridge.json', '/endpoint-health/*', '/payloads/*', '/raw/*']),
      );
      // Payloads only when a DLQ entry is too large to carry its inline payload.
      assert.deepEqual(
        [...grants.get('s3:PutObject')!].sort(),
        objects(['/endpoint-health/*', '/payloads/*']),
      );
      const [list] = statementsOfRole(deliverRole).filter((statement) =>
        actionsOf(statement).includes('s3:ListBucket'),
      ) as (Statement & { Condition?: unknown })[];
      assert.deepEqual(list!.Resource, { 'Fn::GetAtt': [bucketId(), 'Arn'] });
      assert.deepEqual(list!.Condition, { StringLike: { 's3:prefix': 'endpoint-health/*' } });
      assert.match(json(grants.get('secretsmanager:GetSecretValue')), /Secret/);
      assert.doesNotMatch(json(grants.get('secretsmanager:GetSecretValue')), /mailbridge\/tls/);
      assert.deepEqual(grants.get('sqs:SendMessage'), [
        json({ 'Fn::GetAtt': [queueId(stack.queues.deliveryDlq), 'Arn'] }),
      ]);
      assert.ok(grants.has('sqs:ChangeMessageVisibility'), 'the trigger lets it postpone a retry');
    });
  });

  describe('monitoring', () => {
    it('raises each alarm docs/operations.md explains to an encrypted SNS topic', () => {
      const names = ofType('AWS::CloudWatch::Alarm')
        .map(([, a]) => a.Properties.AlarmName as string | undefined)
        .filter((name): name is string => typeof name === 'string')
        .map((name) => name.replace(/^Mailbridge-/, ''))
        .sort();
      assert.deepEqual(names, [
        'ApiFunctionErrors',
        'ApiFunctionThrottles',
        'ApiServerErrors',
        'ApiThrottled',
        'ControlLogDropped',
        'ControlLogRejected',
        'ControlLogWriteFailures',
        'ControlTableThrottled',
        'DeliverFunctionErrors',
        'DeliverFunctionThrottles',
        'DeliveryDlqNotEmpty',
        'DeliveryDlqOldestMessage',
        'DeliveryEndpointDisabled',
        'DeliveryQueueOldestMessage',
        'InboundDlqNotEmpty',
        'InboundDlqOldestMessage',
        'InboundQueueOldestMessage',
        'ListenerBelowMinimumTasks',
        'ListenerNoHealthyTargets',
        'ListenerNothingAccepted',
        'ListenerS3Failures',
        'ListenerSqsFailures',
        'ListenerUnhealthyTargets',
        'ParseFunctionErrors',
        'ParseFunctionThrottles',
        'RouteSyncFailing',
      ]);
      const topic = stack.getLogicalId(stack.monitoring.topic.node.defaultChild as never);
      for (const alarm of Object.values(stack.monitoring.alarms)) {
        const properties = resources[stack.getLogicalId(alarm.node.defaultChild as never)]!.Properties;
        assert.deepEqual(properties.AlarmActions, [{ Ref: topic }]);
      }
      assert.ok(resources[topic]!.Properties.KmsMasterKeyId, 'the topic is KMS-encrypted');
      template.hasResourceProperties('AWS::SNS::Subscription', {
        Protocol: 'email',
        Endpoint: 'ops@example.com',
      });
      const operations = readFileSync('docs/operations.md', 'utf8');
      for (const name of names)
        assert.match(operations, new RegExp(`^### ${name}$`, 'm'), `docs/operations.md explains ${name}`);
    });

    it('alarms when a DLQ entry is a week old, when fewer tasks are healthy than the minimum, and when nothing was accepted for a day', () => {
      const byName = (name: string) =>
        ofType('AWS::CloudWatch::Alarm').find(([, a]) => a.Properties.AlarmName === `Mailbridge-${name}`)![1]
          .Properties;
      for (const [name, dlq] of [
        ['InboundDlqOldestMessage', stack.queues.inboundDlq],
        ['DeliveryDlqOldestMessage', stack.queues.deliveryDlq],
      ] as const) {
        const alarm = byName(name);
        assert.equal(alarm.MetricName, 'ApproximateAgeOfOldestMessage');
        assert.deepEqual(alarm.Dimensions, [
          { Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId(dlq), 'QueueName'] } },
        ]);
        assert.equal(alarm.Threshold, 7 * 86400, 'a week before SQS deletes it at 14 days');
      }
      const below = byName('ListenerBelowMinimumTasks');
      const [healthy] = below.Metrics as { MetricStat: { Metric: { MetricName: string }; Stat: string } }[];
      assert.deepEqual(
        [
          healthy!.MetricStat.Metric.MetricName,
          healthy!.MetricStat.Stat,
          below.ComparisonOperator,
          below.Threshold,
        ],
        ['HealthyHostCount', 'Minimum', 'LessThanThreshold', 2],
        'fewer healthy tasks than listener.tasks',
      );
      assert.equal(below.TreatMissingData, 'breaching');
      const nothing = byName('ListenerNothingAccepted');
      assert.deepEqual(
        [nothing.Namespace, nothing.MetricName, nothing.Dimensions, nothing.Statistic, nothing.Period],
        ['mailbridge', 'accepted', [{ Name: 'service', Value: 'listener' }], 'Sum', 24 * 3600],
      );
      assert.equal(nothing.ComparisonOperator, 'LessThanThreshold');
      assert.equal(nothing.Threshold, 1);
      assert.equal(
        nothing.TreatMissingData,
        'breaching',
        'the listener emits nothing when it accepts nothing',
      );
    });

    it('draws each dashboard widget from the metrics its title names', () => {
      const [[, dashboard]] = ofType('AWS::CloudWatch::Dashboard') as [[string, Resource]];
      const [, parts] = (dashboard.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] })[
        'Fn::Join'
      ];
      // Resource references sit inside JSON strings; any placeholder keeps the document valid JSON.
      const body = JSON.parse(parts.map((part) => (typeof part === 'string' ? part : 'REF')).join('')) as {
        widgets: { type: string; properties: { title?: string; metrics?: unknown[][] } }[];
      };
      /** `namespace/name` (with the `service` of an EMF metric) or `= expression`. */
      const identity = (entry: unknown[]) => {
        if (typeof entry[0] === 'object') return `= ${(entry[0] as { expression: string }).expression}`;
        const [namespace, name, ...rest] = entry as string[];
        const service = rest.indexOf('service');
        return `${namespace}/${name}${service >= 0 ? ` ${rest[service + 1]}` : ''}`;
      };
      const widgets = Object.fromEntries(
        body.widgets
          .filter((widget) => widget.type === 'metric')
          .map((widget) => [
            widget.properties.title,
            [...new Set(widget.properties.metrics!.map(identity))].sort(),
          ]),
      );
      const rejectedSearch = `= SEARCH('{mailbridge,reason,service} MetricName="rejected" service="listener"', 'Sum', 60)`;
      assert.deepEqual(widgets, {
        Connections: [
          'AWS/NetworkELB/ActiveFlowCount',
          'AWS/NetworkELB/NewFlowCount',
          'mailbridge/connections listener',
          'mailbridge/session_usage listener',
        ],
        'Accepted / rejected by reason': [rejectedSearch, 'mailbridge/accepted listener'],
        Bytes: ['AWS/NetworkELB/ProcessedBytes', 'mailbridge/bytes listener'],
        'Listener S3 / SQS failures': ['mailbridge/s3_failures listener', 'mailbridge/sqs_failures listener'],
        Tasks: ['AWS/NetworkELB/HealthyHostCount', 'AWS/NetworkELB/UnHealthyHostCount'],
        'Tasks CPU / memory %': ['AWS/ECS/CPUUtilization', 'AWS/ECS/MemoryUtilization'],
        'Queue depth': ['AWS/SQS/ApproximateNumberOfMessagesVisible'],
        'Oldest message age (s)': ['AWS/SQS/ApproximateAgeOfOldestMessage'],
        'DLQ depth / oldest entry (s)': [
          'AWS/SQS/ApproximateAgeOfOldestMessage',
          'AWS/SQS/ApproximateNumberOfMessagesVisible',
        ],
        'Parse errors': ['AWS/Lambda/Errors', 'AWS/Lambda/Throttles', 'mailbridge/parse_errors parse'],
        'Delivery outcomes': [
          `= SEARCH('{mailbridge,reason,service} MetricName="dead_lettered" service="deliver"', 'Sum', 60)`,
          'mailbridge/delivered deliver',
          'mailbridge/endpoint_disabled deliver',
          'mailbridge/parked deliver',
          'mailbridge/retried deliver',
        ],
        'Delivery latency (ms)': ['mailbridge/delivery_latency deliver'],
        'Function duration (ms)': ['AWS/Lambda/Duration'],
        'Deliver errors / throttles': ['AWS/Lambda/Errors', 'AWS/Lambda/Throttles'],
        'API requests': [
          'AWS/ApiGateway/4xx',
          'AWS/ApiGateway/5xx',
          'AWS/ApiGateway/Count',
          'mailbridge/throttled api',
        ],
        'API latency (ms)': ['AWS/ApiGateway/IntegrationLatency', 'AWS/ApiGateway/Latency'],
        'API function errors / throttles': [
          'AWS/Lambda/Duration',
          'AWS/Lambda/Errors',
          'AWS/Lambda/Throttles',
        ],
        'Log writes failed / dropped, refusals not logged': [
          `= SEARCH('{mailbridge,service} MetricName="ControlLogDropped"', 'Sum', 60)`,
          `= SEARCH('{mailbridge,service} MetricName="ControlLogWriteFailures"', 'Sum', 60)`,
          `= SEARCH('{mailbridge,service} MetricName="RefusalsSampledOut"', 'Sum', 60)`,
        ],
        'Route sync failures': [`= SEARCH('{mailbridge,service} MetricName="RouteSyncFailures"', 'Sum', 60)`],
        'Control table: capacity used / throttled / errors': [
          '= getitem + batchgetitem + query + putitem + updateitem + deleteitem + batchwriteitem',
          'AWS/DynamoDB/ConsumedReadCapacityUnits',
          'AWS/DynamoDB/ConsumedWriteCapacityUnits',
          'AWS/DynamoDB/ReadThrottleEvents',
          'AWS/DynamoDB/SystemErrors',
          'AWS/DynamoDB/WriteThrottleEvents',
        ],
      });
    });

    it('reads only metrics something emits: AWS services’ own (no Container Insights) and the parts’ EMF names, as many as docs/cost.md counts', () => {
      const read: string[] = [];
      let alarmMetrics = 0;
      const visit = (value: unknown, inAlarm: boolean): void => {
        if (Array.isArray(value)) {
          for (const item of value) visit(item, inAlarm);
          return;
        }
        if (typeof value !== 'object' || value === null) return;
        const record = value as Record<string, unknown>;
        if (typeof record.MetricName === 'string' && typeof record.Namespace === 'string') {
          read.push(`${record.Namespace}/${record.MetricName}`);
          if (inAlarm) alarmMetrics++;
        }
        for (const child of Object.values(record)) visit(child, inAlarm);
      };
      for (const [, alarm] of ofType('AWS::CloudWatch::Alarm')) visit(alarm.Properties, true);
      for (const [, policy] of ofType('AWS::ApplicationAutoScaling::ScalingPolicy'))
        visit(policy.Properties, false);
      const [[, dashboard]] = ofType('AWS::CloudWatch::Dashboard') as [[string, Resource]];
      const body = json(dashboard.Properties.DashboardBody);
      for (const [, namespace, name] of body.matchAll(/\[\\"([\w/]+)\\",\\"(\w+)\\"/g))
        read.push(`${namespace}/${name}`);
      const ours = new Set([
        ...Object.values(METRICS).flatMap((names) => Object.keys(names)),
        ...Object.keys(CONTROL_METRICS),
      ]);
      for (const metric of new Set(read)) {
        const [namespace, name] = [
          metric.slice(0, metric.lastIndexOf('/')),
          metric.slice(metric.lastIndexOf('/') + 1),
        ];
        if (namespace === METRICS_NAMESPACE)
          assert.ok(ours.has(name), `${metric} is in core/metric-names.ts`);
        else assert.match(namespace, /^AWS\//, `${metric}: an AWS service's own metric, free`);
      }
      assert.ok(read.some((metric) => metric === 'mailbridge/session_usage'));
      assert.equal(alarmMetrics, DEPLOYMENT.alarmMetrics, 'bench/cost-model.ts counts what the alarms read');
    });

    it('sets a retention on every log group', () => {
      for (const [, group] of ofType('AWS::Logs::LogGroup'))
        assert.equal(group.Properties.RetentionInDays, 30);
    });
  });

  it('outputs the NLB name, the Elastic IPs, the DNS records, the dashboard URL and the queue names', () => {
    const outputs = Object.keys(template.toJSON().Outputs as object).sort();
    assert.deepEqual(outputs, [
      'AlarmTopicArn',
      'ApiUrl',
      'BucketName',
      'ControlTableName',
      'DashboardUrl',
      'DeliveryDlqName',
      'DeliveryQueueName',
      'ElasticIps',
      'HostRecords',
      'InboundDlqName',
      'InboundQueueName',
      'LoadBalancerDnsName',
      'MxRecords',
    ]);
    template.hasOutput('MxRecords', { Value: 'example.com. MX 10 mx.example.com.' });
  });

  describe('cdk-nag AwsSolutions', () => {
    it('finds nothing that is not acknowledged', () => {
      const report = new AwsSolutionsChecks(stack).validateScope(stack);
      const findings = report.violations.map(
        (v) =>
          `${v.severity} ${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
      );
      assert.deepEqual(findings, []);
    });

    it('gives every acknowledgement a specific written reason', () => {
      const acknowledged = stack.node
        .findAll()
        .flatMap((construct) =>
          construct.node.metadata
            .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
            .flatMap((entry) => Object.entries(entry.data as Record<string, string>)),
        )
        // aws-cdk-lib acknowledges some of its own CloudFormation-Validate rules; ours are the AwsSolutions ones.
        .map(([id, reason]) => [id.replace(/^annotation::/i, ''), reason] as const)
        .filter(([id]) => id.startsWith('AwsSolutions-'));
      assert.ok(acknowledged.length > 0);
      for (const [id, reason] of acknowledged) {
        assert.ok(reason.trim().length > 60, `${id}: the reason says why, specifically: "${reason}"`);
      }
      const rules = [...new Set(acknowledged.map(([id]) => id.replace(/\[.*$/, '')))].sort();
      assert.deepEqual(rules, [
        'AwsSolutions-APIG4',
        'AwsSolutions-EC23',
        'AwsSolutions-ECS2',
        'AwsSolutions-ECS4',
        'AwsSolutions-ELB2',
        'AwsSolutions-IAM5',
        'AwsSolutions-S1',
        'AwsSolutions-SMG4',
        'AwsSolutions-VPC7',
      ]);
    });
  });

  it('turns on Container Insights and VPC flow logs (rejected traffic, to the access-log bucket) only when the settings ask', () => {
    const { dir, cleanup: cleanupDir } = tempDir('mailbridge-optional-');
    const optional = buildStack(
      loadDeployment(
        writeDeployment(
          dir,
          { vpc: { flowLogs: true }, listener: { containerInsights: true } },
          readFileSync(EXAMPLE_CONFIG, 'utf8'),
        ),
      ),
      { bundle: false },
    );
    try {
      const on = new StackTemplate(optional.stack);
      assert.deepEqual((on.ofType('AWS::ECS::Cluster')[0]![1].Properties.ClusterSettings as unknown[])[0], {
        Name: 'containerInsights',
        Value: 'enabled',
      });
      const [[, flowLog]] = on.ofType('AWS::EC2::FlowLog') as [[string, Resource]];
      assert.equal(flowLog.Properties.TrafficType, 'REJECT');
      assert.equal(flowLog.Properties.LogDestinationType, 's3');
      assert.deepEqual(ofType('AWS::EC2::FlowLog'), [], 'none by default');
    } finally {
      optional.cleanup();
      cleanupDir();
    }
  });

  it('with storage.encryption "kms": encrypts the bucket and the control table with one rotated key, still with nothing unacknowledged', () => {
    const example = loadDeployment(EXAMPLE_SETTINGS);
    const kms = buildStack({
      ...example,
      settings: {
        ...example.settings,
        account: '123456789012',
        region: 'us-east-1',
        storage: { ...example.settings.storage, encryption: 'kms' },
      },
    });
    try {
      const encrypted = Template.fromStack(kms.stack);
      encrypted.hasResourceProperties('AWS::S3::Bucket', {
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [
            Match.objectLike({
              ServerSideEncryptionByDefault: Match.objectLike({ SSEAlgorithm: 'aws:kms' }),
            }),
          ],
        },
      });
      encrypted.resourcePropertiesCountIs('AWS::KMS::Key', { EnableKeyRotation: true }, 2);
      const bucketKey = kms.stack.getLogicalId(kms.stack.storage.encryptionKey!.node.defaultChild as never);
      encrypted.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
        SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
        Replicas: [
          Match.objectLike({
            SSESpecification: { KMSMasterKeyId: { 'Fn::GetAtt': [bucketKey, 'Arn'] } },
          }),
        ],
      });
      // Every part that reads or writes the table may use the key for it.
      for (const role of [
        kms.stack.listener.taskDefinition.taskRole,
        kms.stack.functions.parse.role!,
        kms.stack.functions.deliver.role!,
        kms.stack.controlPlane.function.role!,
      ]) {
        const roleId = kms.stack.getLogicalId(role.node.defaultChild as never);
        const statements = Object.values(encrypted.findResources('AWS::IAM::Policy'))
          .filter((policy) => json(policy.Properties.Roles).includes(`"${roleId}"`))
          .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
        assert.ok(
          statements.some(
            (statement) =>
              actionsOf(statement).includes('kms:Decrypt') &&
              json(statement.Resource) === json({ 'Fn::GetAtt': [bucketKey, 'Arn'] }),
          ),
          `${roleId} may decrypt with the key`,
        );
      }
      assert.deepEqual(new AwsSolutionsChecks(kms.stack).validateScope(kms.stack).violations, []);
    } finally {
      kms.cleanup();
    }
  });
});
