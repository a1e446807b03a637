import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { AwsSolutionsChecks } from 'cdk-nag';
import { skipUnless, startRspamd } from '../../harness/scanners.ts';
import {
  loadDeployment,
  type MailbridgeStack,
  rspamdHealthCheck,
  withScannerSidecars,
} from '../../infra/index.ts';
import { buildStack, EXAMPLE_CONFIG, tempDir, writeDeployment } from './helpers.ts';
import { json, type Resource, StackTemplate } from './template.ts';

const run = promisify(execFile);
const exampleConfig = readFileSync(EXAMPLE_CONFIG, 'utf8');
const BOTH = { rspamd: true, clamav: true };
const NONE = { rspamd: false, clamav: false };

describe('the scanners section the listener reads, agreeing with the sidecars the settings run', () => {
  it('with no sidecar and no section, leaves the document exactly as written', () => {
    const document = { hostname: 'mx.example.com' };
    const result = withScannerSidecars(document, NONE);
    assert.equal(result.document, document);
    assert.deepEqual(result.issues, []);
    assert.equal(result.scanners.rspamd, null);
    assert.equal(result.scanners.clamd, null);
  });

  it('turns on the section of each sidecar at its loopback address, keeping what the config sets for it', () => {
    const result = withScannerSidecars(
      { hostname: 'mx.example.com', scanners: { rspamd: { maxConcurrent: 8 }, budget: 3 } },
      BOTH,
    );
    assert.deepEqual(result.issues, []);
    assert.deepEqual(result.document.scanners, { rspamd: { maxConcurrent: 8 }, clamd: {}, budget: 3 });
    assert.equal(result.scanners.rspamd!.url, 'http://127.0.0.1:11333');
    assert.equal(result.scanners.rspamd!.maxConcurrent, 8);
    assert.deepEqual([result.scanners.clamd!.host, result.scanners.clamd!.port], ['127.0.0.1', 3310]);
    assert.equal(result.scanners.budget, 3);
  });

  it('names the field when the config and the settings disagree, or a scanner points where no sidecar listens', () => {
    const issues = (scanners: unknown, settings = BOTH) => withScannerSidecars({ scanners }, settings).issues;
    assert.deepEqual(issues({ rspamd: { url: 'http://10.0.0.5:11333' } }), [
      'scanners.rspamd.url: the rspamd sidecar listens on http://127.0.0.1:11333; drop the url',
    ]);
    assert.deepEqual(issues({ clamd: { port: 3311 } }), [
      'scanners.clamd: the ClamAV sidecar listens on 127.0.0.1:3310; drop host and port',
    ]);
    assert.match(
      issues({ rspamd: null })[0]!,
      /^scanners\.rspamd: null \(off\), but the settings run the rspamd sidecar/,
    );
    assert.match(
      issues({ clamd: {} }, NONE)[0]!,
      /^scanners\.clamd: set, but no clamav runs beside the listener in AWS; turn on listener\.scanners\.clamav/,
    );
    assert.match(issues({ rspamd: { maxConcurrent: 0 } })[0]!, /^scanners\.rspamd\.maxConcurrent: /);
    assert.deepEqual(issues('on'), ['scanners: must be an object']);
  });
});

describe('scanner sidecars in the CDK app', () => {
  let dir: string;
  let cleanupDir: () => void;
  let off: { stack: MailbridgeStack; t: StackTemplate; cleanup: () => void };
  let on: { stack: MailbridgeStack; t: StackTemplate; cleanup: () => void };
  const synth = (scanners: Record<string, unknown>) => {
    const path = writeDeployment(dir, { listener: { scanners } }, exampleConfig);
    const built = buildStack(loadDeployment(path), { bundle: false });
    return { stack: built.stack, t: new StackTemplate(built.stack), cleanup: built.cleanup };
  };
  const containersOf = (t: StackTemplate) => {
    const [[, task]] = t.ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
    return Object.fromEntries(
      (task.Properties.ContainerDefinitions as Record<string, unknown>[]).map((c) => [c.Name, c]),
    ) as Record<string, Record<string, unknown>>;
  };
  const alarmNames = (t: StackTemplate) =>
    t
      .ofType('AWS::CloudWatch::Alarm')
      .map(([, a]) => String(a.Properties.AlarmName).replace(/^Mailbridge-/, ''));

  before(() => {
    ({ dir, cleanup: cleanupDir } = tempDir('mailbridge-scanners-'));
    off = synth({});
    on = synth({ ...BOTH, quarantineAlarmPerHour: 40 });
  });
  after(() => {
    off.cleanup();
    on.cleanup();
    cleanupDir();
  });

  it('are off by default: one container, the settings’ task size, the config deployed without a scanners section', () => {
    assert.deepEqual(Object.keys(containersOf(off.t)), ['listener']);
    const [[, task]] = off.t.ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
    assert.deepEqual([task.Properties.Cpu, task.Properties.Memory], ['256', '1024']);
    assert.equal(
      'scanners' in JSON.parse(loadDeployment(writeDeployment(dir, {}, exampleConfig)).configJson),
      false,
    );
    assert.equal(alarmNames(off.t).includes('ScannerUnavailable'), false);
  });

  it('with both on: the task grows to 0.5 vCPU / 4 GB and the listener keeps its own share', () => {
    const [[, task]] = on.t.ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
    assert.deepEqual([task.Properties.Cpu, task.Properties.Memory], ['512', '4096']);
    const { listener } = containersOf(on.t);
    assert.deepEqual([listener!.Essential, listener!.Cpu, listener!.MemoryReservation], [true, 256, 1024]);
    assert.equal(listener!.DependsOn, undefined, 'the listener never waits for a scanner');
    const deployed = loadDeployment(writeDeployment(dir, { listener: { scanners: BOTH } }, exampleConfig));
    assert.deepEqual(
      JSON.parse(deployed.configJson).scanners,
      { rspamd: {}, clamd: {} },
      'the listener finds them at their default, loopback addresses',
    );
  });

  it('runs rspamd non-essential, read-only but for its database volume, checked on /ping, restarted when it exits', () => {
    const { rspamd } = containersOf(on.t);
    assert.equal(rspamd!.Image, 'rspamd/rspamd:4.3');
    assert.equal(rspamd!.Essential, false);
    assert.deepEqual([rspamd!.Cpu, rspamd!.MemoryReservation, rspamd!.Memory], [128, 512, 768]);
    assert.equal(rspamd!.ReadonlyRootFilesystem, true);
    assert.deepEqual(rspamd!.MountPoints, [
      { ContainerPath: '/var/lib/rspamd', ReadOnly: false, SourceVolume: 'rspamd-data' },
    ]);
    const [[, task]] = on.t.ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
    assert.deepEqual(task.Properties.Volumes, [{ Name: 'rspamd-data' }]);
    assert.deepEqual(rspamd!.HealthCheck, {
      Command: ['CMD', ...rspamdHealthCheck(11333)],
      Interval: 30,
      Retries: 3,
      StartPeriod: 60,
      Timeout: 5,
    });
    assert.deepEqual(rspamd!.RestartPolicy, { Enabled: true, RestartAttemptPeriod: 60 });
    const logging = rspamd!.LogConfiguration as { Options: Record<string, unknown> };
    assert.deepEqual(logging.Options['awslogs-group'], { Ref: on.t.idOf(on.stack.listener.logGroup) });
    assert.equal(logging.Options['awslogs-stream-prefix'], 'rspamd');
  });

  it('runs ClamAV non-essential with freshclam, 1.5 GB reserved, one database copy at a reload, and the stream limit the listener uses', () => {
    const { clamav } = containersOf(on.t);
    assert.equal(clamav!.Image, 'clamav/clamav:1.5');
    assert.equal(clamav!.Essential, false);
    assert.deepEqual([clamav!.Cpu, clamav!.MemoryReservation], [128, 1536]);
    const environment = Object.fromEntries(
      (clamav!.Environment as { Name: string; Value: string }[]).map((e) => [e.Name, e.Value]),
    );
    assert.deepEqual(environment, {
      CLAMD_CONF_ConcurrentDatabaseReload: 'no',
      CLAMD_CONF_StreamMaxLength: String(64 * 1024 * 1024),
      FRESHCLAM_CHECKS: '12',
    });
    assert.deepEqual(clamav!.HealthCheck, {
      Command: ['CMD', 'clamdcheck.sh'],
      Interval: 30,
      Retries: 3,
      StartPeriod: 300,
      Timeout: 10,
    });
    assert.deepEqual(clamav!.RestartPolicy, { Enabled: true, RestartAttemptPeriod: 60 });
  });

  it('lets the tasks out on 443 only: AWS APIs and freshclam’s HTTPS mirrors', () => {
    const sg = on.t.propertiesOf(on.stack.listener.securityGroup);
    assert.deepEqual(
      (sg.SecurityGroupEgress as { FromPort: number; ToPort: number; CidrIp: string }[]).map((rule) => [
        rule.CidrIp,
        rule.FromPort,
        rule.ToPort,
      ]),
      [['0.0.0.0/0', 443, 443]],
    );
  });

  it('with rspamd alone: 0.5 vCPU / 2 GB, no ClamAV', () => {
    const alone = synth({ rspamd: true });
    try {
      const [[, task]] = alone.t.ofType('AWS::ECS::TaskDefinition') as [[string, Resource]];
      assert.deepEqual([task.Properties.Cpu, task.Properties.Memory], ['512', '2048']);
      assert.deepEqual(Object.keys(containersOf(alone.t)).sort(), ['listener', 'rspamd']);
    } finally {
      alone.cleanup();
    }
  });

  it('alarms when scanners give no verdict for 10 minutes, and when quarantine grows past the settings’ rate', () => {
    const alarm = (name: string) =>
      on.t
        .ofType('AWS::CloudWatch::Alarm')
        .find(([, a]) => a.Properties.AlarmName === `Mailbridge-${name}`)![1].Properties;
    const unavailable = alarm('ScannerUnavailable');
    const [query] = unavailable.Metrics as { Expression: string; Period: number }[];
    assert.equal(
      query!.Expression,
      `SELECT SUM(scanner_unavailable) FROM SCHEMA("mailbridge", scanner, reason, service) WHERE service = 'listener' AND reason != 'too_large' AND reason != 'disabled'`,
    );
    assert.deepEqual([query!.Period, unavailable.EvaluationPeriods, unavailable.Threshold], [300, 2, 5]);
    const quarantine = alarm('QuarantineGrowing');
    const [growth] = quarantine.Metrics as { Expression: string; Period: number }[];
    assert.equal(
      growth!.Expression,
      `SELECT SUM(quarantined) FROM SCHEMA("mailbridge", reason, service) WHERE service = 'listener'`,
    );
    assert.deepEqual(
      [growth!.Period, quarantine.Threshold, quarantine.ComparisonOperator],
      [3600, 40, 'GreaterThanThreshold'],
    );
    const topic = on.t.idOf(on.stack.monitoring.topic);
    for (const name of ['ScannerUnavailable', 'QuarantineGrowing'])
      assert.deepEqual(alarm(name).AlarmActions, [{ Ref: topic }]);
    const operations = readFileSync('docs/operations.md', 'utf8');
    for (const name of ['ScannerUnavailable', 'QuarantineGrowing'])
      assert.match(operations, new RegExp(`^### ${name}$`, 'm'), `docs/operations.md explains ${name}`);
  });

  it('draws verdicts, unavailability, quarantine and scan time on the dashboard', () => {
    const [[, dashboard]] = on.t.ofType('AWS::CloudWatch::Dashboard') as [[string, Resource]];
    const [, parts] = dashboard.Properties.DashboardBody['Fn::Join'] as [string, unknown[]];
    const body = JSON.parse(parts.map((part) => (typeof part === 'string' ? part : 'REF')).join('')) as {
      widgets: { type: string; properties: { title?: string; metrics?: unknown[][] } }[];
    };
    const widget = (title: string) =>
      body.widgets
        .find((w) => w.properties.title === title)!
        .properties.metrics!.map((entry) =>
          typeof entry[0] === 'object'
            ? (entry[0] as { expression: string }).expression
            : entry.slice(0, 2).join('/'),
        );
    assert.deepEqual(widget('Verdicts by scanner'), [
      `SEARCH('{mailbridge,scanner,service,verdict} MetricName="scan_verdicts" service="listener"', 'Sum', 60)`,
    ]);
    assert.deepEqual(widget('Scanner unavailable by reason'), [
      `SEARCH('{mailbridge,reason,scanner,service} MetricName="scanner_unavailable" service="listener"', 'Sum', 60)`,
    ]);
    assert.deepEqual(widget('Quarantined by reason'), [
      `SEARCH('{mailbridge,reason,service} MetricName="quarantined" service="listener"', 'Sum', 60)`,
    ]);
    assert.deepEqual(widget('Scan time (ms)'), ['mailbridge/scan_ms', 'mailbridge/scan_ms']);
  });

  it('turning them on changes the task and adds alarms and widgets; the NLB, its addresses, the service and the table stay as they were', () => {
    const kept = [
      'AWS::ElasticLoadBalancingV2::LoadBalancer',
      'AWS::ElasticLoadBalancingV2::Listener',
      'AWS::ElasticLoadBalancingV2::TargetGroup',
      'AWS::EC2::EIP',
      'AWS::EC2::SecurityGroup',
      'AWS::ECS::Service',
      'AWS::DynamoDB::GlobalTable',
      'AWS::ApplicationAutoScaling::ScalableTarget',
    ];
    for (const [id, resource] of Object.entries(off.t.resources)) {
      assert.equal(on.t.resources[id]?.Type, resource.Type, `${id} (${resource.Type}) keeps its logical id`);
      if (kept.includes(resource.Type)) assert.deepEqual(on.t.resources[id], resource, `${id} is untouched`);
    }
    // The deployed config gains its scanners section: its new hash rolls the tasks and the functions.
    const changed = Object.keys(off.t.resources).filter(
      (id) => json(off.t.resources[id]) !== json(on.t.resources[id]),
    );
    assert.deepEqual(changed.map((id) => off.t.resources[id]!.Type).sort(), [
      'AWS::CloudWatch::Dashboard',
      'AWS::ECS::TaskDefinition',
      'AWS::Lambda::Function',
      'AWS::Lambda::Function',
      'AWS::Lambda::Function',
      'Custom::AWS',
    ]);
  });

  it('finds nothing cdk-nag does not accept', () => {
    assert.deepEqual(new AwsSolutionsChecks(on.stack).validateScope(on.stack).violations, []);
  });

  it('rspamd’s health check passes against a live rspamd and fails once it is gone', {
    skip: skipUnless('rspamd'),
  }, async () => {
    const rspamd = await startRspamd();
    const [command, ...args] = rspamdHealthCheck(rspamd.port) as [string, ...string[]];
    try {
      await run(command, args, { timeout: 10_000 });
    } finally {
      await rspamd.stop();
    }
    await assert.rejects(run(command, args, { timeout: 10_000 }));
  });
});
