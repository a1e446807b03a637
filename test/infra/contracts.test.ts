import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  attachmentKey,
  BUCKET_PREFIXES,
  CONFIG_OBJECT_KEY,
  CONTROL_METRICS,
  endpointHealthKey,
  METRICS,
  METRICS_NAMESPACE,
  type MetricService,
  messagePayloadsPrefix,
  payloadKey,
  READINESS_PROBE_KEY,
  rawObjectKey,
} from '../../core/index.ts';
import { loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import { buildStack, EXAMPLE_CONFIG, tempDir, writeDeployment } from './helpers.ts';
import { actionsOf, type Resource, StackTemplate } from './template.ts';

// The contracts between the code and the stack, checked against one synthesized stack (the example
// deployment with scanners on, so every alarm and widget exists): the bucket keys the code builds
// against the grants and lifecycle rules, the metrics it emits against what monitoring reads.
let stack: MailbridgeStack;
let t: StackTemplate;
let cleanup: () => void;

before(async () => {
  const dir = tempDir('mailbridge-contracts-');
  const settings = writeDeployment(
    dir.dir,
    { listener: { scanners: { rspamd: true, clamav: true } } },
    await readFile(EXAMPLE_CONFIG, 'utf8'),
  );
  const built = buildStack(loadDeployment(settings), { bundle: false });
  stack = built.stack;
  t = new StackTemplate(stack);
  cleanup = () => {
    built.cleanup();
    dir.cleanup();
  };
});

after(() => cleanup());

/** An IAM resource or condition pattern (`*` any run, `?` one character) as a RegExp. */
const iamPattern = (pattern: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );

/**
 * Every key the code builds is one the synthesized stack's roles are granted for the actions its
 * writers and readers use, and the kinds of object that expire are under a lifecycle rule: the key
 * layout and the grants come from one module, and this catches a builder that leaves it.
 */
describe('bucket keys against the synthesized grants and lifecycle rules', () => {
  /** `action → object key patterns` granted on the mail bucket, over all roles. */
  const granted = new Map<string, string[]>();
  /** `s3:prefix` patterns under which ListBucket is granted on the mail bucket. */
  const listable: string[] = [];
  let lifecyclePrefixes: string[] = [];

  before(() => {
    const bucketId = t.idOf(stack.storage.bucket);
    const bucketArn = JSON.stringify({ 'Fn::GetAtt': [bucketId, 'Arn'] });
    for (const [, policy] of t.ofType('AWS::IAM::Policy')) {
      for (const statement of policy.Properties.PolicyDocument.Statement) {
        if (statement.Effect !== 'Allow') continue;
        for (const resource of [statement.Resource].flat()) {
          const join = resource?.['Fn::Join']?.[1];
          const objects =
            Array.isArray(join) && JSON.stringify(join[0]) === bucketArn && typeof join[1] === 'string'
              ? (join[1] as string).replace(/^\//, '')
              : undefined;
          for (const action of actionsOf(statement)) {
            if (objects !== undefined) granted.set(action, [...(granted.get(action) ?? []), objects]);
            else if (action === 's3:ListBucket' && JSON.stringify(resource) === bucketArn) {
              listable.push(statement.Condition?.StringLike?.['s3:prefix'] ?? '*');
            }
          }
        }
      }
    }
    const rules = t.propertiesOf(stack.storage.bucket).LifecycleConfiguration.Rules as {
      Prefix?: string;
      ExpirationInDays?: number;
    }[];
    lifecyclePrefixes = rules.filter((rule) => rule.ExpirationInDays).map((rule) => rule.Prefix ?? '');
  });

  const id = '01JKEYS0000000000000000001';
  const cases: { key: string; actions: string[]; expires: boolean }[] = [
    // The listener streams raw mail as a multipart upload; parse and the API read it.
    {
      key: rawObjectKey(id, new Date('2026-12-04T10:00:00Z')),
      actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'],
      expires: true,
    },
    // The listener's readiness probe aborts an upload that never exists.
    { key: READINESS_PROBE_KEY, actions: ['s3:AbortMultipartUpload'], expires: true },
    // Parse writes payloads and attachments; deliver reads payloads and presigns attachment links.
    { key: payloadKey(id, 'support'), actions: ['s3:PutObject', 's3:GetObject'], expires: true },
    {
      key: attachmentKey(id, 0, 'report.pdf'),
      actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'],
      expires: true,
    },
    // A disabled endpoint stays disabled: its health object never expires.
    {
      key: endpointHealthKey('https://hooks.example.test/in'),
      actions: ['s3:GetObject', 's3:PutObject'],
      expires: false,
    },
    { key: CONFIG_OBJECT_KEY, actions: ['s3:GetObject', 's3:PutObject'], expires: false },
  ];

  for (const { key, actions, expires } of cases) {
    it(`${key}: granted ${actions.join(', ')}${expires ? ', under a lifecycle rule' : ''}`, () => {
      for (const action of actions) {
        const patterns = granted.get(action) ?? [];
        assert.ok(
          patterns.some((pattern) => iamPattern(pattern).test(key)),
          `no role may ${action} ${key}; granted: ${patterns.join(', ')}`,
        );
      }
      assert.equal(
        lifecyclePrefixes.some((prefix) => key.startsWith(prefix)),
        expires,
        `lifecycle prefixes: ${lifecyclePrefixes.join(', ')}`,
      );
    });
  }

  it('every prefix that is not a fixed key has a builder above, and the payload prefix is a prefix of its keys', () => {
    const keys = cases.map((entry) => entry.key);
    for (const prefix of Object.values(BUCKET_PREFIXES)) {
      assert.ok(
        keys.some((key) => key.startsWith(prefix)),
        `no builder writes under ${prefix}`,
      );
    }
    assert.ok(payloadKey(id, 'support').startsWith(messagePayloadsPrefix(id)));
  });

  it('endpoint health is listable where it is kept, so a missing object answers 404', () => {
    const key = endpointHealthKey('https://hooks.example.test/in');
    assert.ok(
      listable.some((pattern) => iamPattern(pattern).test(key)),
      `listable: ${listable.join(', ')}`,
    );
    for (const other of [payloadKey(id, 'support'), rawObjectKey(id, new Date())]) {
      assert.ok(!listable.some((pattern) => iamPattern(pattern).test(other)), `${other} is listable`);
    }
  });

  it('the pattern matcher reads IAM wildcards', () => {
    assert.ok(iamPattern('raw/*').test('raw/2026/12/04/x.eml'));
    assert.ok(!iamPattern('raw/*').test('payloads/raw/x'));
    assert.ok(iamPattern('config/mailbridge.json').test(CONFIG_OBJECT_KEY));
    assert.ok(!iamPattern('config/mailbridge.json').test('config/mailbridgeXjson'));
  });
});

const ROOT = resolve(import.meta.dirname, '../..');

/** Where the code that emits each part's metrics lives; the control plane's run in every part. */
const EMITTERS: Record<Exclude<MetricService, 'api'> | 'control', string> = {
  listener: 'listener',
  parse: 'functions/parse',
  deliver: 'functions/deliver',
  control: 'core/control',
};

/** A folder's code: its TypeScript files' text, joined. */
async function codeIn(folder: string): Promise<string> {
  const files = (await readdir(join(ROOT, folder), { recursive: true })).filter((file) =>
    file.endsWith('.ts'),
  );
  return (await Promise.all(files.map((file) => readFile(join(ROOT, folder, file), 'utf8')))).join('\n');
}

/** The metric names code emits directly: `addMetric('name', …)`, `#count('name', …)`, `['name', MetricUnit.…]`. */
function emittedNames(code: string): Set<string> {
  const names = new Set<string>();
  for (const [, name] of code.matchAll(/(?:addMetric|#count)\(\s*'(\w+)'/g)) names.add(name!);
  for (const [, name] of code.matchAll(/\[\s*'(\w+)',\s*MetricUnit\./g)) names.add(name!);
  return names;
}

/** A CloudFormation value as text: `Fn::Join` of strings joined, other tokens as `?`. */
function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, unknown[]] } | undefined)?.['Fn::Join'];
  return join ? join[1].map(textOf).join(join[0]) : '?';
}

/**
 * Each metric of our namespace that alarms, the dashboard and scaling policies read, with the
 * dimension set it is read by: metric stats (`Namespace` + `MetricName` + `Dimensions`), the
 * dashboard's metric arrays (`[namespace, name, dimension, value, …]`), metric-math SEARCH schemas
 * (`{namespace,dimension,…}`) and Metrics Insights SELECTs (`SCHEMA(namespace, dimension, …)`).
 */
function readDimensions(resources: Record<string, Resource>) {
  const found: { name: string; dimensions: string; where: string }[] = [];
  const q = '\\\\?"';
  const word = `${q}([\\w.-]*)${q}`;
  const arrays = new RegExp(`\\[${q}${METRICS_NAMESPACE}${q},${word}((?:,${q}[^"\\\\]*${q})*)`, 'g');
  const searches = new RegExp(`\\{${METRICS_NAMESPACE},([\\w,]*)\\}\\s*MetricName=${word}`, 'g');
  const schemas = new RegExp(
    `SUM\\((\\w+)\\)\\s+FROM\\s+SCHEMA\\(${q}${METRICS_NAMESPACE}${q},\\s*([\\w, ]*)\\)`,
    'g',
  );
  for (const [id, resource] of Object.entries(resources)) {
    if (resource.Type === 'AWS::Logs::MetricFilter') continue;
    const walk = (value: unknown): void => {
      if (typeof value === 'string') {
        for (const [, name, rest] of value.matchAll(arrays)) {
          const strings = [...rest!.matchAll(new RegExp(word, 'g'))].map((m) => m[1]!);
          const dimensions = strings
            .filter((_, i) => i % 2 === 0)
            .sort()
            .join(',');
          found.push({ name: name!, dimensions, where: id });
        }
        for (const [, dimensions, name] of value.matchAll(searches))
          found.push({ name: name!, dimensions: dimensions!.split(',').sort().join(','), where: id });
        for (const [, name, dimensions] of value.matchAll(schemas))
          found.push({ name: name!, dimensions: dimensions!.split(/,\s*/).sort().join(','), where: id });
      } else if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === 'object') {
        const record = value as Record<string, unknown>;
        if (record.Namespace === METRICS_NAMESPACE && typeof record.MetricName === 'string') {
          const dimensions = ((record.Dimensions ?? []) as { Name: string }[]).map((d) => d.Name).sort();
          found.push({ name: record.MetricName, dimensions: dimensions.join(','), where: id });
        }
        if ('Fn::Join' in record) walk(textOf(record));
        else Object.values(record).forEach(walk);
      }
    };
    walk(resource.Properties);
  }
  return found;
}

/** The part whose vocabulary defines `name`, or `control`. */
function ownerOf(name: string): MetricService | 'control' | undefined {
  if (name in CONTROL_METRICS) return 'control';
  return (Object.keys(METRICS) as MetricService[]).find((service) => name in METRICS[service]);
}

/**
 * The metrics the synthesized alarms and dashboard read against what the code emits: a name read but never emitted is an alarm that never fires.
 */
describe('metric names: what monitoring reads, the code emits', () => {
  let read: Set<string>;
  /** Each part's code; a name read must be spelled there (some reach addMetric through a helper). */
  const code = new Map<string, string>();
  /** The names each part emits directly, which must be in its vocabulary. */
  const emitted = new Map<string, Set<string>>();

  before(async () => {
    read = new Set(readDimensions(t.resources).map(({ name }) => name));
    for (const [part, folder] of Object.entries(EMITTERS)) {
      code.set(part, await codeIn(folder));
      emitted.set(part, emittedNames(code.get(part)!));
    }
    const filtered = t
      .ofType('AWS::Logs::MetricFilter')
      .flatMap(([, filter]) => filter.Properties.MetricTransformations as { MetricName: string }[])
      .map((transformation) => transformation.MetricName);
    emitted.set('api', new Set(filtered));
    code.set('api', filtered.map((name) => `'${name}'`).join('\n'));
  });

  it('monitoring reads the metrics of every part', () => {
    for (const name of [
      'accepted',
      's3_failures',
      'quarantined',
      'dead_lettered',
      'throttled',
      'RouteSyncFailures',
    ])
      assert.ok(read.has(name), `${name} is read (read: ${[...read].join(', ')})`);
  });

  it('every metric read is in the vocabulary and emitted by the part that owns it', () => {
    const problems: string[] = [];
    for (const name of read) {
      const owner = ownerOf(name);
      if (!owner) problems.push(`${name}: read, but not in core/metric-names.ts`);
      else if (!code.get(owner)!.includes(`'${name}'`))
        problems.push(`${name}: read, but ${owner} never emits it`);
    }
    assert.deepEqual(problems, []);
  });

  it('every metric emitted is in the vocabulary of the part that emits it', (t) => {
    const problems: string[] = [];
    const unread: string[] = [];
    for (const [part, names] of emitted) {
      for (const name of names) {
        if (ownerOf(name) !== part)
          problems.push(
            `${part} emits ${name}, which core/metric-names.ts lists under ${ownerOf(name) ?? 'no part'}`,
          );
        else if (!read.has(name)) unread.push(`${part}.${name}`);
      }
    }
    // Not a failure: some metrics are for people looking them up (or for scaling), not for alarms.
    t.diagnostic(`emitted, read by no alarm or dashboard widget: ${unread.join(', ') || 'none'}`);
    assert.deepEqual(problems, []);
  });

  it('a metric read by name is read with the dimensions it is emitted with', () => {
    // CloudWatch keeps one series per dimension set: a metric emitted with {service, reason} read
    // as {service} is a graph or an alarm that stays empty.
    const declared = (name: string) => {
      const owner = ownerOf(name);
      const extra =
        owner === 'control' || owner === undefined
          ? []
          : (METRICS[owner] as Record<string, readonly string[]>)[name]!;
      return ['service', ...extra].sort().join(',');
    };
    const problems = readDimensions(t.resources)
      .filter(({ name, dimensions }) => ownerOf(name) !== 'control' && dimensions !== declared(name))
      .map(
        ({ name, dimensions, where }) =>
          `${where} reads ${name} by {${dimensions}}, emitted by {${declared(name)}}`,
      );
    assert.deepEqual(problems, []);
  });

  it('the emitter scan finds each way a part emits', async () => {
    const listener = emitted.get('listener')!;
    for (const name of ['accepted', 'rejected', 'quarantined', 'scan_ms'])
      assert.ok(listener.has(name), name);
    assert.ok(emitted.get('control')!.has('ControlLogWriteFailures'));
  });
});
