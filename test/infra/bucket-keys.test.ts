import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  attachmentKey,
  BUCKET_PREFIXES,
  CONFIG_OBJECT_KEY,
  endpointHealthKey,
  messagePayloadsPrefix,
  payloadKey,
  READINESS_PROBE_KEY,
  rawObjectKey,
} from '../../core/index.ts';
import { buildStack } from './helpers.ts';
import { actionsOf, StackTemplate } from './template.ts';

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
  let cleanup: () => void;

  before(() => {
    const built = buildStack(undefined, { bundle: false });
    cleanup = built.cleanup;
    const t = new StackTemplate(built.stack);
    const bucketId = t.idOf(built.stack.storage.bucket);
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
    const rules = t.propertiesOf(built.stack.storage.bucket).LifecycleConfiguration.Rules as {
      Prefix?: string;
      ExpirationInDays?: number;
    }[];
    lifecyclePrefixes = rules.filter((rule) => rule.ExpirationInDays).map((rule) => rule.Prefix ?? '');
  });

  after(() => cleanup());

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
    const built = cases.map((entry) => entry.key);
    for (const prefix of Object.values(BUCKET_PREFIXES)) {
      assert.ok(
        built.some((key) => key.startsWith(prefix)),
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
