import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { Queue } from 'aws-cdk-lib/aws-sqs';
import { ConfigError } from '../../core/index.ts';
import {
  ControlPlane,
  ControlTable,
  DeployedConfig,
  Functions,
  ListenerService,
  loadDeployment,
  parseDeploySettings,
  Secrets,
  Storage,
} from '../../infra/index.ts';
import {
  buildStack,
  cdkContext,
  EXAMPLE_CONFIG,
  EXAMPLE_SETTINGS,
  tempDir,
  writeDeployment,
} from './helpers.ts';

const exampleConfig = readFileSync(EXAMPLE_CONFIG, 'utf8');

function issuesOf(action: () => unknown): readonly string[] {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues;
  }
  assert.fail('expected a ConfigError');
}

describe('deployment settings', () => {
  let dir: string;
  let cleanup: () => void;
  before(() => ({ dir, cleanup } = tempDir('mailbridge-settings-')));
  after(() => cleanup());

  it('loads the example: settings with defaults filled in and the config validated for AWS', () => {
    const { settings, config, configJson } = loadDeployment(EXAMPLE_SETTINGS);
    assert.equal(settings.stackName, 'Mailbridge');
    assert.equal(settings.listener.tasks, 2);
    assert.equal(settings.functions.deliver.batchSize, 3);
    assert.deepEqual(config.domains, ['example.com']);
    assert.equal(config.tls.source, 'secrets-manager');
    assert.equal(
      JSON.parse(configJson).hostname,
      'mx.example.com',
      'the document is deployed as written, in JSON',
    );
  });

  it('names each bad setting by its path', () => {
    const issues = issuesOf(() =>
      parseDeploySettings(
        {
          config: 'c.yaml',
          listener: { tasks: 1, cpu: 512, memoryMiB: 512 },
          functions: { deliver: { reservedConcurrency: 5, maxConcurrency: 10 } },
          storage: { payloadDays: 7 },
          logRetentionDays: 31,
          alarmEmail: 'not-an-address',
          vpcId: 'vpc-1',
        },
        'settings.json',
      ),
    );
    const fields = issues.map((issue) => issue.slice(0, issue.indexOf(':')));
    assert.deepEqual(fields.sort(), [
      '(root)',
      'alarmEmail',
      'functions.deliver.maxConcurrency',
      'listener.memoryMiB',
      'listener.tasks',
      'logRetentionDays',
      'storage.payloadDays',
    ]);
    assert.ok(
      issues.some((issue) => /vpcId/.test(issue)),
      'an unknown key is named',
    );
    const related = issuesOf(() =>
      parseDeploySettings(
        { config: 'c.yaml', storage: { payloadDays: 60 }, vpc: { id: 'vpc-0123456789abcdef0' } },
        'settings.json',
      ),
    );
    assert.deepEqual(related, [
      'storage.attachmentDays: must be at least storage.payloadDays (payloads link to attachments)',
      'vpc.id: an existing VPC is looked up at synth: set account and region too',
    ]);
    const controlPlane = issuesOf(() =>
      parseDeploySettings(
        { config: 'c.yaml', api: { rateLimit: 200 }, storage: { encryption: 'kms' } },
        'settings.json',
      ),
    );
    assert.deepEqual(
      controlPlane.map((issue) => issue.slice(0, issue.indexOf(':'))),
      ['api.burstLimit', 'storage.encryption'],
    );
    assert.match(controlPlane[1]!, /control table .* set account and region/);
  });

  it('fails on a bad routes file, naming the field in it', () => {
    const broken = exampleConfig.replace(
      'https://app.example.com/webhooks/mail',
      'http://app.example.com/hook',
    );
    const issues = issuesOf(() => loadDeployment(writeDeployment(dir, {}, broken)));
    assert.deepEqual(issues, [
      'routes[0].endpoints[0]: must be https:// (plain http:// only for loopback in local runs)',
    ]);
  });

  it('refuses a config that cannot run behind the NLB, naming each field', () => {
    const local = exampleConfig
      .replace('hostname: mx.example.com', 'hostname: localhost')
      .replace('{ host: 0.0.0.0, port: 2525, mode: mx }', '{ host: 127.0.0.1, port: 25, mode: mx }')
      .replace('closeTimeout: 60', 'closeTimeout: 110')
      .replace('{ secretsManager: mailbridge/smtp/app }', '{ env: SMTP_PASSWORD }');
    const issues = issuesOf(() => loadDeployment(writeDeployment(dir, {}, local)));
    assert.deepEqual(
      issues.map((issue) => issue.slice(0, issue.indexOf(':'))),
      ['hostname', 'listeners[0].host', 'listeners[0].port', 'auth.users[0].password.env'],
    );
  });

  it('fails synth on a closeTimeout Fargate cannot wait for, or a public port no config listener uses', () => {
    const slow = exampleConfig.replace('closeTimeout: 60', 'closeTimeout: 110');
    const settings = { listener: { publicPorts: { '25': 2500 } } };
    const issues = issuesOf(() =>
      buildStack(loadDeployment(writeDeployment(dir, settings, slow)), { bundle: false }),
    );
    assert.deepEqual(
      issues.map((issue) => issue.slice(0, issue.indexOf(':'))),
      ['limits.closeTimeout', 'publicPorts.25'],
    );
    assert.match(issues[0]!, /at most 105s/);
  });

  it('fails synth on a TLS source other than Secrets Manager', () => {
    const files = exampleConfig.replace(
      'tls: { source: secrets-manager, secretId: mailbridge/tls, reloadInterval: 1h }',
      'tls: { source: files, certFile: cert.pem, keyFile: key.pem }',
    );
    const issues = issuesOf(() =>
      buildStack(loadDeployment(writeDeployment(dir, {}, files)), { bundle: false }),
    );
    assert.match(issues[0]!, /^tls\.source: the AWS deployment reads the certificate from Secrets Manager/);
  });

  it('names the config setting when its file cannot be read', () => {
    const missing = issuesOf(() =>
      loadDeployment(writeDeployment(dir, { config: 'nope.yaml' }, exampleConfig)),
    );
    assert.match(missing[0]!, /^config: cannot read .*nope\.yaml/);
  });
});

describe('constructs refuse conflicting props at synth', () => {
  const scope = () => new Stack(new App({ context: cdkContext() }), 'S');
  const { config, configJson } = loadDeployment(EXAMPLE_SETTINGS);
  /** The resources the compute constructs are given. */
  const resources = (stack: Stack) => {
    const storage = new Storage(stack, 'Storage');
    return {
      storage,
      deployedConfig: new DeployedConfig(stack, 'Config', { storage, json: configJson }),
      secrets: new Secrets(stack, 'Secrets', { config }),
      inboundQueue: new Queue(stack, 'In'),
      deliveryQueue: new Queue(stack, 'Out'),
      deliveryDlq: new Queue(stack, 'Dlq'),
      inboundDlq: new Queue(stack, 'InboundDlq'),
      controlTable: new ControlTable(stack, 'Control'),
    };
  };

  it('Storage: an encryption key with S3-managed encryption', async () => {
    const stack = scope();
    const { Key } = await import('aws-cdk-lib/aws-kms');
    assert.throws(
      () => new Storage(stack, 'Storage', { encryption: 's3', encryptionKey: new Key(stack, 'K') }),
      /encryptionKey given with encryption 's3'/,
    );
  });

  it('Functions: a trigger concurrency above the reserved concurrency', () => {
    const stack = scope();
    assert.throws(
      () =>
        new Functions(stack, 'Functions', {
          ...resources(stack),
          parse: { reservedConcurrency: 5, maxConcurrency: 10 },
        }),
      /parse maxConcurrency 10 exceeds reservedConcurrency 5/,
    );
  });

  it('ListenerService: fewer than 2 tasks, or a max below the desired count', () => {
    for (const [props, message] of [
      [{ minCount: 1 }, /at least 2/],
      [{ minCount: 4, maxCount: 3 }, /maxCount 3 is below minCount 4/],
      [{ assignPublicIp: false }, /needs private subnets with egress/],
    ] as const) {
      const stack = scope();
      const vpc = new Vpc(stack, 'Vpc', {
        natGateways: 0,
        subnetConfiguration: [{ name: 'p', subnetType: SubnetType.PUBLIC }],
      });
      assert.throws(
        () => new ListenerService(stack, 'L', { vpc, config, ...resources(stack), ...props }),
        message,
      );
    }
  });

  it('ControlTable and ControlPlane: a retention under a day, a burst below the rate', () => {
    assert.throws(
      () => new ControlTable(scope(), 'Control', { retentionDays: 0 }),
      /retentionDays 0: whole days/,
    );
    const stack = scope();
    const { storage, deployedConfig } = resources(stack);
    assert.throws(
      () =>
        new ControlPlane(stack, 'ControlPlane', {
          storage,
          deployedConfig,
          inboundQueue: new Queue(stack, 'Inbound'),
          throttle: { rateLimit: 100, burstLimit: 10 },
        }),
      /burstLimit 10 is below rateLimit 100/,
    );
  });

  it('Secrets: two fields reading different JSON keys of one generated secret', () => {
    const conflicting = {
      ...config,
      auth: {
        users: [
          { user: 'a', password: { secretsManager: 'shared', jsonKey: 'a' } },
          { user: 'b', password: { secretsManager: 'shared', jsonKey: 'b' } },
        ],
      },
    };
    assert.throws(
      () => new Secrets(scope(), 'Secrets', { config: conflicting }),
      /read different jsonKeys of secret shared/,
    );
  });
});
