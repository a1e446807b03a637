import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONTROL_METRICS, METRICS, METRICS_NAMESPACE, type MetricService } from '../../core/index.ts';
import { loadDeployment } from '../../infra/index.ts';
import { buildStack, EXAMPLE_CONFIG, tempDir, writeDeployment } from './helpers.ts';
import { type Resource, StackTemplate } from './template.ts';

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
 * The metric names in our namespace that alarms, the dashboard and scaling policies read: metric
 * stats (`Namespace` + `MetricName`), metric-math SEARCH and Metrics Insights SELECT expressions,
 * and the dashboard's metric arrays.
 */
function readIn(resources: Record<string, Resource>): Set<string> {
  const names = new Set<string>();
  const q = '\\\\?"';
  const patterns = [
    new RegExp(`\\{${METRICS_NAMESPACE}[^}]*\\}\\s*MetricName=${q}(\\w+)${q}`, 'g'),
    new RegExp(`SUM\\((\\w+)\\)\\s+FROM\\s+SCHEMA\\(${q}${METRICS_NAMESPACE}${q}`, 'g'),
    new RegExp(`\\[${q}${METRICS_NAMESPACE}${q},${q}(\\w+)${q}`, 'g'),
  ];
  const walk = (value: unknown): void => {
    if (typeof value === 'string') {
      for (const pattern of patterns) for (const [, name] of value.matchAll(pattern)) names.add(name!);
    } else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      if (record.Namespace === METRICS_NAMESPACE && typeof record.MetricName === 'string')
        names.add(record.MetricName);
      if ('Fn::Join' in record) walk(textOf(record));
      else Object.values(record).forEach(walk);
    }
  };
  for (const resource of Object.values(resources)) {
    // A metric filter writes its metric (the API's `throttled`); it is an emitter, not a reader.
    if (resource.Type !== 'AWS::Logs::MetricFilter') walk(resource.Properties);
  }
  return names;
}

/** The part whose vocabulary defines `name`, or `control`. */
function ownerOf(name: string): MetricService | 'control' | undefined {
  if (name in CONTROL_METRICS) return 'control';
  return (Object.keys(METRICS) as MetricService[]).find((service) => name in METRICS[service]);
}

/**
 * The metrics the synthesized alarms and dashboard read (scanners on, so their widgets and alarm
 * exist) against what the code emits: a name read but never emitted is an alarm that never fires.
 */
describe('metric names: what monitoring reads, the code emits', () => {
  let read: Set<string>;
  /** Each part's code; a name read must be spelled there (some reach addMetric through a helper). */
  const code = new Map<string, string>();
  /** The names each part emits directly, which must be in its vocabulary. */
  const emitted = new Map<string, Set<string>>();
  let cleanup: () => void;

  before(async () => {
    const dir = tempDir('mailbridge-metrics-');
    const settings = writeDeployment(
      dir.dir,
      { listener: { scanners: { rspamd: true, clamav: true } } },
      await readFile(EXAMPLE_CONFIG, 'utf8'),
    );
    const built = buildStack(loadDeployment(settings), { bundle: false });
    cleanup = () => {
      built.cleanup();
      dir.cleanup();
    };
    const t = new StackTemplate(built.stack);
    read = readIn(t.resources);
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

  after(() => cleanup());

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

  it('the emitter scan finds each way a part emits', async () => {
    const listener = emitted.get('listener')!;
    for (const name of ['accepted', 'rejected', 'quarantined', 'scan_ms'])
      assert.ok(listener.has(name), name);
    assert.ok(emitted.get('control')!.has('ControlLogWriteFailures'));
  });
});
