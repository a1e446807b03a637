/** The account of every local ARN: the emulator's queue URLs carry it, the table's ARN is built with it. */
export const LOCAL_ACCOUNT = '000000000000';
export const LOCAL_REGION = 'us-east-1';

export type Values = string | readonly string[];

/** An IAM policy statement with its resources resolved to ARNs. */
export interface PolicyStatement {
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: Values;
  readonly Resource: Values;
  readonly Condition?: Readonly<Record<string, Readonly<Record<string, Values>>>>;
}

/** One call as IAM evaluates it: the action, the resource's ARN and the condition keys the service sets. */
export interface AuthorizationRequest {
  readonly action: string;
  readonly resource: string;
  /** Condition keys of the request, e.g. `s3:prefix` of a ListBucket or `dynamodb:LeadingKeys`. */
  readonly context?: Readonly<Record<string, readonly string[]>>;
}

/** IAM's wildcards (`*` any run, `?` one character) as a regular expression. */
function wildcard(pattern: string, flags = ''): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, flags);
}

const list = (values: Values) => (typeof values === 'string' ? [values] : values);

/**
 * One condition operator block: `StringEquals`, `StringLike`, each optionally `ForAllValues:` or
 * `ForAnyValue:` (IAM User Guide, "Condition operators" and "Multivalued context keys"). A single-
 * valued operator on a key the request lacks is false; `ForAllValues` on it is true, as in IAM.
 */
function conditionHolds(
  operator: string,
  block: Readonly<Record<string, Values>>,
  context: Readonly<Record<string, readonly string[]>>,
): boolean {
  const [qualifier, base] = operator.includes(':') ? operator.split(':') : [undefined, operator];
  const matches: Record<string, (value: string, pattern: string) => boolean> = {
    StringEquals: (value, pattern) => value === pattern,
    StringLike: (value, pattern) => wildcard(pattern).test(value),
  };
  const match = matches[base!];
  if (!match) throw new Error(`condition operator ${operator} is not evaluated here`);
  return Object.entries(block).every(([key, patterns]) => {
    const values = context[key];
    const one = (value: string) => list(patterns).some((pattern) => match(value, pattern));
    if (qualifier === 'ForAllValues') return (values ?? []).every(one);
    if (qualifier === 'ForAnyValue') return (values ?? []).some(one);
    if (qualifier) throw new Error(`condition qualifier ${qualifier} is not evaluated here`);
    return values?.length === 1 && one(values[0]!);
  });
}

function statementApplies(statement: PolicyStatement, request: AuthorizationRequest): boolean {
  // Actions compare without case, resources with (IAM User Guide, "IAM JSON policy elements").
  if (!list(statement.Action).some((action) => wildcard(action, 'i').test(request.action))) return false;
  if (!list(statement.Resource).some((resource) => wildcard(resource).test(request.resource))) return false;
  return Object.entries(statement.Condition ?? {}).every(([operator, block]) =>
    conditionHolds(operator, block, request.context ?? {}),
  );
}

/** Whether the statements allow the request: an explicit Deny wins, then any Allow; else implicitly denied. */
export function isAllowed(statements: readonly PolicyStatement[], request: AuthorizationRequest): boolean {
  const applying = statements.filter((statement) => statementApplies(statement, request));
  return !applying.some((s) => s.Effect === 'Deny') && applying.some((s) => s.Effect === 'Allow');
}

/** The ARN of a queue from its URL (`…/<account>/<name>`), as SQS names it. */
export function queueArn(queueUrl: string, region = LOCAL_REGION): string {
  const [account, name] = new URL(queueUrl).pathname.split('/').filter(Boolean);
  return `arn:aws:sqs:${region}:${account}:${name}`;
}

export function tableArn(table: string, region = LOCAL_REGION): string {
  return `arn:aws:dynamodb:${region}:${LOCAL_ACCOUNT}:table/${table}`;
}
