import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { loadDeployment } from '../../infra/index.ts';
import { buildStack, EXAMPLE_CONFIG, tempDir, writeDeployment } from './helpers.ts';

type Resource = {
  Type: string;
  Properties: Record<string, unknown>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
};

/** The template of the stack built from these settings and config text (no bundling: only the template matters here). */
function synth(dir: string, settings: Record<string, unknown>, configText: string) {
  const path = writeDeployment(dir, { stackName: 'Mailbridge', ...settings }, configText);
  const built = buildStack(loadDeployment(path), { bundle: false });
  try {
    return Template.fromStack(built.stack).toJSON().Resources as Record<string, Resource>;
  } finally {
    built.cleanup();
  }
}

/** Secret name → logical id of the resource CloudFormation manages for it. */
function secretIds(resources: Record<string, Resource>): Map<string, string> {
  return new Map(
    Object.entries(resources)
      .filter(([, resource]) => resource.Type === 'AWS::SecretsManager::Secret')
      .map(([id, resource]) => [resource.Properties.Name as string, id]),
  );
}

/**
 * What CloudFormation would do to the secrets on a redeploy from `before` to `after`: a logical id
 * that names another secret after the change is an update of one secret into another (the name is
 * taken: "already exists", rollback) or a replacement with a new random value.
 */
function secretMoves(before: Map<string, string>, after: Map<string, string>): string[] {
  const nameOf = new Map([...after].map(([name, id]) => [id, name]));
  const moves: string[] = [];
  for (const [name, id] of before) {
    if (after.has(name) && after.get(name) !== id) moves.push(`${name}: ${id} → ${after.get(name)}`);
    const now = nameOf.get(id);
    if (now !== undefined && now !== name) moves.push(`${id}: ${name} → ${now}`);
  }
  return moves;
}

describe('a redeploy after a documented change keeps every secret it had', () => {
  const example = readFileSync(EXAMPLE_CONFIG, 'utf8');
  let dir: string;
  let cleanup: () => void;
  let original: Record<string, Resource>;
  before(() => {
    ({ dir, cleanup } = tempDir('mailbridge-updates-'));
    original = synth(dir, {}, example);
  });
  after(() => cleanup());

  it('rotating a signing secret (docs/operations.md): add the new one, then remove the old one', () => {
    const both = example.replaceAll(
      'secret: { secretsManager: mailbridge/signing/support }',
      'secret: [{ secretsManager: mailbridge/signing/support }, { secretsManager: mailbridge/signing/support-2 }]',
    );
    const newOnly = example.replaceAll('mailbridge/signing/support }', 'mailbridge/signing/support-2 }');
    const added = synth(dir, {}, both);
    const removed = synth(dir, {}, newOnly);
    assert.ok(secretIds(added).has('mailbridge/signing/support-2'));
    assert.deepEqual(secretMoves(secretIds(original), secretIds(added)), []);
    assert.deepEqual(secretMoves(secretIds(added), secretIds(removed)), []);
  });

  it('adding an SMTP AUTH user', () => {
    const twoUsers = example.replace(
      '- { user: app, password: { secretsManager: mailbridge/smtp/app } }',
      '- { user: app, password: { secretsManager: mailbridge/smtp/app } }\n    - { user: billing, password: { secretsManager: mailbridge/smtp/billing } }',
    );
    const grown = synth(dir, {}, twoUsers);
    assert.ok(secretIds(grown).has('mailbridge/smtp/billing'));
    assert.deepEqual(secretMoves(secretIds(original), secretIds(grown)), []);
  });

  it('keeps generated secrets when a deploy replaces or removes them, but not after a failed create', () => {
    const generated = Object.values(original).filter((r) => r.Type === 'AWS::SecretsManager::Secret');
    assert.deepEqual(generated.map((r) => r.Properties.Name).sort(), [
      'mailbridge/signing/support',
      'mailbridge/smtp/app',
    ]);
    for (const secret of generated) {
      assert.equal(secret.UpdateReplacePolicy, 'Retain', `${secret.Properties.Name}: a receiver holds it`);
      assert.equal(secret.DeletionPolicy, 'RetainExceptOnCreate', `${secret.Properties.Name}`);
    }
  });
});

describe('a failed first deploy leaves nothing behind; later deploys and deletes keep what holds mail or addresses', () => {
  const example = readFileSync(EXAMPLE_CONFIG, 'utf8');
  let dir: string;
  let cleanup: () => void;
  before(() => ({ dir, cleanup } = tempDir('mailbridge-retain-')));
  after(() => cleanup());

  it('Elastic IPs, both buckets and both KMS keys are RETAIN_ON_UPDATE_OR_DELETE', () => {
    // Retain on a failed create leaked 2 EIPs per try, against a default quota of 5 per region.
    const resources = synth(
      dir,
      { account: '123456789012', region: 'us-east-1', storage: { encryption: 'kms' } },
      example,
    );
    const kept = Object.values(resources).filter((r) =>
      ['AWS::EC2::EIP', 'AWS::S3::Bucket', 'AWS::KMS::Key'].includes(r.Type),
    );
    assert.deepEqual(kept.map((r) => r.Type).sort(), [
      'AWS::EC2::EIP',
      'AWS::EC2::EIP',
      'AWS::KMS::Key',
      'AWS::KMS::Key',
      'AWS::S3::Bucket',
      'AWS::S3::Bucket',
    ]);
    for (const resource of kept) {
      assert.equal(resource.DeletionPolicy, 'RetainExceptOnCreate', resource.Type);
      assert.equal(resource.UpdateReplacePolicy, 'Retain', resource.Type);
    }
  });

  it('reuses the Elastic IPs the settings name instead of allocating new ones', () => {
    const elasticIps = [
      { allocationId: 'eipalloc-0123456789abcdef0', publicIp: '198.51.100.10' },
      { allocationId: 'eipalloc-0123456789abcdef1', publicIp: '198.51.100.11' },
    ];
    const path = writeDeployment(dir, { listener: { elasticIps } }, example);
    const built = buildStack(loadDeployment(path), { bundle: false });
    try {
      const template = Template.fromStack(built.stack);
      template.resourceCountIs('AWS::EC2::EIP', 0);
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
        SubnetMappings: elasticIps.map(({ allocationId }) => ({
          AllocationId: allocationId,
          SubnetId: Match.anyValue(),
        })),
      });
      template.hasOutput('ElasticIps', { Value: '198.51.100.10,198.51.100.11' });
    } finally {
      built.cleanup();
    }
  });

  it('refuses a number of reused Elastic IPs other than one per AZ', () => {
    const path = writeDeployment(
      dir,
      {
        listener: { elasticIps: [{ allocationId: 'eipalloc-0123456789abcdef0', publicIp: '198.51.100.10' }] },
      },
      example,
    );
    assert.throws(
      () => buildStack(loadDeployment(path), { bundle: false }),
      /1 Elastic IP.*2 public subnets/,
    );
  });
});
