import type { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';

export type Resource = {
  Type: string;
  // biome-ignore lint/suspicious/noExplicitAny: CloudFormation properties are free-form JSON.
  Properties: Record<string, any>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
};
export type Statement = {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
};

export const json = (value: unknown) => JSON.stringify(value);
export const actionsOf = (statement: Statement) => [statement.Action].flat();

/** Queries over the template of a synthesized stack: resources by type, a role's statements and grants. */
export class StackTemplate {
  readonly stack: Stack;
  readonly template: Template;
  readonly resources: Record<string, Resource>;

  constructor(stack: Stack) {
    this.stack = stack;
    this.template = Template.fromStack(stack);
    this.resources = this.template.toJSON().Resources as Record<string, Resource>;
  }

  ofType(type: string): [string, Resource][] {
    return Object.entries(this.resources).filter(([, resource]) => resource.Type === type);
  }

  /** The logical id of a construct's CloudFormation resource. */
  idOf(construct: IConstruct): string {
    return this.stack.getLogicalId(construct.node.defaultChild as never);
  }

  /** The properties of a construct's CloudFormation resource. */
  propertiesOf(construct: IConstruct): Resource['Properties'] {
    return this.resources[this.idOf(construct)]!.Properties;
  }

  /** Every Allow statement attached to the role with this logical id. */
  statementsOfRole(roleId: string): Statement[] {
    return this.ofType('AWS::IAM::Policy')
      .filter(([, policy]) => json(policy.Properties.Roles).includes(`"${roleId}"`))
      .flatMap(([, policy]) => (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement)
      .filter((statement) => statement.Effect === 'Allow');
  }

  /** `action → resources` (as JSON text) granted to a role. */
  grantsOf(roleId: string): Map<string, string[]> {
    const grants = new Map<string, string[]>();
    for (const statement of this.statementsOfRole(roleId)) {
      for (const action of actionsOf(statement)) {
        grants.set(action, [...(grants.get(action) ?? []), ...[statement.Resource].flat().map(json)]);
      }
    }
    return grants;
  }
}
