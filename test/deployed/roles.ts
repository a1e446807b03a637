import type { CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { TABLE } from '../../harness/control-store.ts';
import type { TestEmulator } from '../../harness/emulator.ts';
import {
  LOCAL_ACCOUNT,
  LOCAL_REGION,
  type PolicyStatement,
  queueArn,
  tableArn,
  type Values,
} from '../../harness/iam-policy.ts';
import { loadDeployment, type MailbridgeStack } from '../../infra/index.ts';
import { buildStack, EXAMPLE_SETTINGS } from '../infra/helpers.ts';
import { emulatorRefs } from './helpers.ts';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/**
 * A template value with its references replaced: `Ref` to a pseudo parameter, `Fn::GetAtt` of an
 * `Arn` the test stands in for, `Fn::Join`. Any other reference (a log group, a secret) is for a
 * service the proxy does not answer: it stays a string no request ARN can match.
 */
function resolve(value: unknown, arns: ReadonlyMap<string, string>): string {
  if (typeof value === 'string') return value;
  const object = value as Record<string, unknown>;
  const pseudo: Record<string, string> = {
    'AWS::Partition': 'aws',
    'AWS::Region': LOCAL_REGION,
    'AWS::AccountId': LOCAL_ACCOUNT,
  };
  if (typeof object.Ref === 'string' && pseudo[object.Ref]) return pseudo[object.Ref]!;
  const getAtt = object['Fn::GetAtt'] as [string, string] | undefined;
  if (getAtt?.[1] === 'Arn' && arns.has(getAtt[0])) return arns.get(getAtt[0])!;
  if (Array.isArray(object['Fn::Join'])) {
    const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
    return parts.map((part) => resolve(part, arns)).join(separator);
  }
  return `unresolved:${JSON.stringify(value)}`;
}

/** Every statement attached to the role with this logical id (its own policies and the inline ones). */
export function roleStatements(
  resources: Resources,
  roleId: string,
  arns: ReadonlyMap<string, string>,
): PolicyStatement[] {
  const documents = Object.values(resources).flatMap((resource) => {
    const { Type, Properties } = resource;
    if (Type === 'AWS::IAM::Policy' && JSON.stringify(Properties.Roles).includes(`{"Ref":"${roleId}"}`)) {
      return [Properties.PolicyDocument];
    }
    return [];
  });
  const role = resources[roleId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleId} is not a role of the template`);
  if (role.Properties.ManagedPolicyArns) {
    throw new Error(`${roleId} has managed policies, which this evaluation does not read`);
  }
  const inline = (role.Properties.Policies ?? []) as { PolicyDocument: unknown }[];
  documents.push(...inline.map((policy) => policy.PolicyDocument));
  return documents.flatMap((document) =>
    (document as { Statement: Record<string, unknown>[] }).Statement.map((statement) => ({
      Effect: statement.Effect as PolicyStatement['Effect'],
      Action: statement.Action as Values,
      Resource: [statement.Resource].flat().map((resource) => resolve(resource, arns)),
      ...(statement.Condition ? { Condition: statement.Condition as PolicyStatement['Condition'] } : {}),
    })),
  );
}

/** The parts of mailbridge that call AWS, each with its own role. */
export type DeployedRole = 'listener' | 'parse' | 'deliver';

/**
 * The statements of the listener's task role and each function's role in a synthesized stack, their
 * bucket, queue and table ARNs replaced by those of the local stand-ins (see {@link emulatorRefs}).
 */
export function deployedRoleStatements(
  stack: MailbridgeStack,
  emulator: Pick<TestEmulator, 'resources'>,
): Record<DeployedRole, PolicyStatement[]> {
  const arnOf = (local: string) => {
    if (local.startsWith('http')) return queueArn(local);
    if (local === emulator.resources.bucket) return `arn:aws:s3:::${local}`;
    return local === TABLE ? tableArn(local) : undefined;
  };
  const arns = new Map<string, string>();
  for (const [id, local] of emulatorRefs({ stack }, emulator)) {
    const arn = arnOf(local);
    if (arn) arns.set(id, arn);
  }
  const resources = Template.fromStack(stack).toJSON().Resources as Resources;
  const statements = (role: IConstruct) =>
    roleStatements(resources, stack.getLogicalId(role.node.defaultChild as CfnElement), arns);
  return {
    listener: statements(stack.listener.taskDefinition.taskRole),
    parse: statements(stack.functions.parse.role!),
    deliver: statements(stack.functions.deliver.role!),
  };
}

/** The example app, synthesized once per process: a synth takes seconds, and its grants do not change. */
let example: MailbridgeStack | undefined;

/** The roles of the example app as synthesized (functions not bundled, which changes no grant), for the local stand-ins of `emulator`. */
export function synthesizedRoles(
  emulator: Pick<TestEmulator, 'resources'>,
): Record<DeployedRole, PolicyStatement[]> {
  if (!example) {
    const { stack, cleanup } = buildStack(loadDeployment(EXAMPLE_SETTINGS), { bundle: false });
    try {
      Template.fromStack(stack);
      example = stack;
    } finally {
      cleanup();
    }
  }
  return deployedRoleStatements(example, emulator);
}
