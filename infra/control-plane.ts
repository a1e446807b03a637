import { ArnFormat, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpStage,
  LogGroupLogDestination,
  PayloadFormatVersion,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import {
  type Attribute,
  AttributeType,
  Billing,
  ProjectionType,
  TableEncryptionV2,
  TableV2,
} from 'aws-cdk-lib/aws-dynamodb';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { FilterPattern, LogGroup, MetricFilter, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  ACTIVITY_PARTITION_PREFIX,
  CONTROL_TABLE_KEYS,
  controlTableDefinition,
  DEDUPE_PARTITION_PREFIX,
} from '../core/control/index.ts';
import { ENV, METRIC_SERVICES, type METRICS, METRICS_NAMESPACE } from '../core/index.ts';
import { ROUTE_SECRET_PREFIX } from '../functions/api/index.ts';
import type { DeployedConfig } from './deployed-config.ts';
import { bundledFunction } from './functions.ts';
import { acknowledgeKeyWrites, type Storage } from './storage.ts';

/**
 * The partitions of the table each kind of item lives in (core/control/dynamodb-store.ts): readers
 * of routes, domains and the change feed, and writers of the message log, are held to theirs by
 * IAM's `dynamodb:LeadingKeys` condition.
 */
const PARTITIONS = {
  routes: ['ROUTE', 'DOMAIN', 'CHANGE'],
  /** Messages (`M#<id>`), one item per message plus one per further recipient, and their follow-up activity. */
  messages: ['M#*', `${ACTIVITY_PARTITION_PREFIX}*`],
  refusals: ['REFUSALS'],
  /** Duplicate markers (`DEDUPE#<fingerprint>`), one item each. */
  dedupe: [`${DEDUPE_PARTITION_PREFIX}*`],
} as const;

/** The table's keys and indexes as CDK takes them, from the one definition the local store is created with. */
function tableSchema() {
  const definition = controlTableDefinition('schema');
  if (definition.BillingMode !== 'PAY_PER_REQUEST') throw new Error('the control table is on-demand');
  const types = new Map(definition.AttributeDefinitions!.map((a) => [a.AttributeName!, a.AttributeType!]));
  const attribute = (name: string): Attribute => {
    const type = types.get(name);
    if (type !== 'S' && type !== 'N' && type !== 'B') throw new Error(`attribute ${name}: no type`);
    return {
      name,
      type: { S: AttributeType.STRING, N: AttributeType.NUMBER, B: AttributeType.BINARY }[type],
    };
  };
  const keys = (schema: { AttributeName?: string; KeyType?: string }[]) => ({
    partitionKey: attribute(schema.find((key) => key.KeyType === 'HASH')!.AttributeName!),
    sortKey: attribute(schema.find((key) => key.KeyType === 'RANGE')!.AttributeName!),
  });
  return {
    ...keys(definition.KeySchema!),
    globalSecondaryIndexes: definition.GlobalSecondaryIndexes!.map((index) => {
      if (index.Projection?.ProjectionType !== 'KEYS_ONLY') throw new Error(`${index.IndexName}: keys only`);
      return {
        indexName: index.IndexName!,
        ...keys(index.KeySchema!),
        projectionType: ProjectionType.KEYS_ONLY,
      };
    }),
  };
}

export interface ControlTableProps {
  /**
   * Days the message log keeps a message (its TTL); the raw mail's lifecycle, so a log entry never
   * outlives the mail it links to.
   * @default 30
   */
  readonly retentionDays?: number;
  /**
   * Encrypt the table with this customer-managed key (the mail bucket's, with `storage.encryption: kms`).
   * @default - a key DynamoDB owns: encrypted at rest at no charge and with no KMS request per read or write
   */
  readonly encryptionKey?: IKey;
}

/**
 * The control plane's DynamoDB table (core/control/dynamodb-store.ts: message log, refusals, API
 * routes, domains, keys, change feed): on-demand, TTL on `expiresAt`, point-in-time recovery,
 * deletion protection, and kept when a deploy replaces it or the stack is deleted. Grants are by
 * part and by partition: what a part reads and writes, in the partitions it uses, nothing more.
 */
export class ControlTable extends Construct {
  public readonly table: TableV2;
  public readonly encryptionKey?: IKey;
  /** Where a part finds the table, for its environment: `MAILBRIDGE_CONTROL_TABLE` and the retention. */
  public readonly environment: Readonly<Record<string, string>>;
  public readonly retentionDays: number;

  constructor(scope: Construct, id: string, props: ControlTableProps = {}) {
    super(scope, id);
    this.retentionDays = props.retentionDays ?? 30;
    if (!Number.isInteger(this.retentionDays) || this.retentionDays < 1) {
      throw new Error(`${this.node.path}: retentionDays ${this.retentionDays}: whole days, at least 1`);
    }
    this.encryptionKey = props.encryptionKey;
    this.table = new TableV2(this, 'Table', {
      ...tableSchema(),
      billing: Billing.onDemand(),
      timeToLiveAttribute: CONTROL_TABLE_KEYS.ttlAttribute,
      encryption: this.encryptionKey
        ? TableEncryptionV2.customerManagedKey(this.encryptionKey)
        : TableEncryptionV2.dynamoOwnedKey(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      // The message log, API routes, domains and keys survive `cdk destroy`; a failed first create cleans up.
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.environment = {
      [ENV.controlTable]: this.table.tableName,
      [ENV.controlRetentionDays]: String(this.retentionDays),
    };
  }

  /** Read API routes, domains and the change feed (route sync, and deliver's look-up of a route). */
  public grantRouteReads(grantee: IGrantable): void {
    this.grantItems(grantee, ['dynamodb:GetItem', 'dynamodb:Query'], PARTITIONS.routes, false);
  }

  /** Write message log events (one update per message and part, and an item per further recipient). */
  public grantLogWrites(grantee: IGrantable): void {
    this.grantItems(grantee, ['dynamodb:UpdateItem', 'dynamodb:BatchWriteItem'], PARTITIONS.messages, true);
  }

  /** Mark duplicates: a conditional PutItem, and a GetItem of the marker that was there first (parse). */
  public grantDuplicateMarkers(grantee: IGrantable): void {
    this.grantItems(grantee, ['dynamodb:PutItem', 'dynamodb:GetItem'], PARTITIONS.dedupe, true);
  }

  /** Write SMTP refusals (batched puts in their own partition). */
  public grantRefusalWrites(grantee: IGrantable): void {
    this.grantItems(grantee, ['dynamodb:BatchWriteItem'], PARTITIONS.refusals, true);
  }

  /**
   * What the API calls on every item of the table, and Query on its indexes: no Scan, no streams,
   * no table administration (the store never scans; the table is the stack's).
   */
  public grantFullAccess(grantee: IGrantable): void {
    Grant.addToPrincipal({
      grantee,
      actions: [
        'dynamodb:GetItem',
        'dynamodb:BatchGetItem',
        'dynamodb:Query',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:BatchWriteItem',
      ],
      resourceArns: [this.table.tableArn],
    });
    Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:Query'],
      resourceArns: [`${this.table.tableArn}/index/*`],
    });
    if (this.encryptionKey) {
      this.encryptionKey.grantEncryptDecrypt(grantee);
      acknowledgeKeyWrites(grantee, "the control table's key");
    }
    const principal = grantee.grantPrincipal;
    if (!Construct.isConstruct(principal)) return;
    const tableId = Stack.of(this).getLogicalId(this.table.node.defaultChild as never);
    Validations.of(principal).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${tableId}.Arn>/index/*]`,
      reason:
        "The API lists messages through the table's three indexes (byDay, byRecipient, bySender); the wildcard covers those indexes of this table only.",
    });
  }

  /**
   * Read API routes' signing secrets (`mailbridge/routes/…` in Secrets Manager), which the API
   * creates one by one: the grant covers the prefix, and GetSecretValue only.
   */
  public grantRouteSecretsRead(grantee: IGrantable): void {
    this.grantRouteSecrets(grantee, ['secretsmanager:GetSecretValue']);
  }

  /** Create, tag and delete API routes' signing secrets: the API. */
  public grantRouteSecretsManage(grantee: IGrantable): void {
    this.grantRouteSecrets(grantee, [
      'secretsmanager:CreateSecret',
      'secretsmanager:TagResource',
      'secretsmanager:DeleteSecret',
    ]);
  }

  private grantRouteSecrets(grantee: IGrantable, actions: string[]): void {
    const stack = Stack.of(this);
    const arn = stack.formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${ROUTE_SECRET_PREFIX}*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    Grant.addToPrincipal({ grantee, actions, resourceArns: [arn] });
    const principal = grantee.grantPrincipal;
    if (!Construct.isConstruct(principal)) return;
    // The ARN as cdk-nag names it: literal in a stack bound to an account and region, pseudo-parameters otherwise.
    const resolved = stack.resolve(arn) as string | { 'Fn::Join': [string, (string | { Ref: string })[]] };
    const named =
      typeof resolved === 'string'
        ? resolved
        : resolved['Fn::Join'][1]
            .map((part) => (typeof part === 'string' ? part : `<${part.Ref}>`))
            .join(resolved['Fn::Join'][0]);
    Validations.of(principal).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${named}]`,
      reason: `The API makes one secret per API route and rotation at run time, named ${ROUTE_SECRET_PREFIX}<route>/<secret>; the grant covers that prefix only, with ${actions.join(', ')}.`,
    });
  }

  /** `actions` on the table's items whose partition key is one of `partitions` (a `*` pattern allowed). */
  private grantItems(
    grantee: IGrantable,
    actions: string[],
    partitions: readonly string[],
    write: boolean,
  ): void {
    const pattern = partitions.some((partition) => partition.includes('*'));
    Grant.addToPrincipal({
      grantee,
      actions,
      resourceArns: [this.table.tableArn],
      conditions: {
        [pattern ? 'ForAllValues:StringLike' : 'ForAllValues:StringEquals']: {
          'dynamodb:LeadingKeys': [...partitions],
        },
      },
    });
    if (!this.encryptionKey) return;
    if (!write) {
      this.encryptionKey.grantDecrypt(grantee);
      return;
    }
    this.encryptionKey.grantEncryptDecrypt(grantee);
    acknowledgeKeyWrites(grantee, "the control table's key");
  }
}

export interface ControlPlaneProps {
  /** The deployed config: its routes and domains are the API's read-only base, `hostname` the MX host. */
  readonly deployedConfig: DeployedConfig;
  /** Raw messages, which the API links to for 15 minutes. */
  readonly storage: Storage;
  /** Where `POST /v1/messages/{id}/retry` puts a message back, for parse to deliver again. */
  readonly inboundQueue: IQueue;
  /** @see ControlTableProps.retentionDays @default 30 */
  readonly retentionDays?: number;
  /** @see ControlTableProps.encryptionKey @default - a key DynamoDB owns */
  readonly encryptionKey?: IKey;
  /**
   * Requests per second the API takes on average, and at once above that; beyond them API Gateway
   * answers 429 before the function runs.
   * @default - 50 per second, bursts of 100
   */
  readonly throttle?: { readonly rateLimit: number; readonly burstLimit: number };
  /**
   * Memory of the API function, MiB.
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Retention of the API function's logs and the access log.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
}

/** The API function's timeout: below API Gateway's 30 s integration limit, above a DNS check's bounded wait. */
const API_TIMEOUT = Duration.seconds(15);

/**
 * The control plane (core/control, docs/control-plane.md): the table, and the HTTP API in front
 * of the API function (functions/api). API Gateway throttles and writes a JSON access log (its
 * 429s become the `throttled` metric); requests reach the function unauthenticated by API Gateway,
 * since every request carries a Bearer API key that the function checks against the table.
 */
export class ControlPlane extends Construct {
  public readonly table: ControlTable;
  public readonly function: NodejsFunction;
  public readonly api: HttpApi;
  public readonly stage: HttpStage;
  public readonly accessLogs: LogGroup;

  constructor(scope: Construct, id: string, props: ControlPlaneProps) {
    super(scope, id);
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const throttle = props.throttle ?? { rateLimit: 50, burstLimit: 100 };
    if (throttle.burstLimit < throttle.rateLimit) {
      throw new Error(
        `${this.node.path}: burstLimit ${throttle.burstLimit} is below rateLimit ${throttle.rateLimit}`,
      );
    }
    this.table = new ControlTable(this, 'Data', {
      retentionDays: props.retentionDays,
      encryptionKey: props.encryptionKey,
    });

    this.function = bundledFunction(this, 'Api', {
      entry: 'api',
      memorySize: props.memorySize ?? 512,
      timeout: API_TIMEOUT,
      deployedConfig: props.deployedConfig,
      environment: { ...this.table.environment, [ENV.inboundQueueUrl]: props.inboundQueue.queueUrl },
      logRetention,
    });
    this.table.grantFullAccess(this.function);
    props.inboundQueue.grantSendMessages(this.function);
    this.table.grantRouteSecretsManage(this.function);
    props.storage.grantReadRaw(this.function);

    this.api = new HttpApi(this, 'HttpApi', {
      description: 'mailbridge control plane API',
      createDefaultStage: false,
      // Every path goes to the function, which routes /v1/… itself and answers 404 for the rest.
      defaultIntegration: new HttpLambdaIntegration('Function', this.function, {
        payloadFormatVersion: PayloadFormatVersion.VERSION_2_0,
      }),
    });
    Validations.of(this.api).acknowledge({
      id: 'AwsSolutions-APIG4',
      reason:
        'Every request carries a Bearer API key that the function checks against the hashed keys in the table (401 without one, 403 for a read-only key that writes); an API Gateway authorizer would be a second function doing the same look-up.',
    });
    this.accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle,
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogs),
        // One JSON line per request; `service` names the part as the other parts' log lines do.
        format: AccessLogFormat.custom(
          JSON.stringify({
            service: METRIC_SERVICES.api,
            requestId: '$context.requestId',
            time: '$context.requestTime',
            ip: '$context.identity.sourceIp',
            method: '$context.httpMethod',
            path: '$context.path',
            status: '$context.status',
            latencyMs: '$context.responseLatency',
            integrationError: '$context.integrationErrorMessage',
          }),
        ),
      },
    });
    // HTTP APIs publish 4xx, not 429 alone: count throttled requests from the access log.
    const throttled: keyof (typeof METRICS)['api'] = 'throttled';
    new MetricFilter(this, 'ThrottledRequests', {
      logGroup: this.accessLogs,
      filterPattern: FilterPattern.stringValue('$.status', '=', '429'),
      metricNamespace: METRICS_NAMESPACE,
      metricName: throttled,
      metricValue: '1',
      dimensions: { service: '$.service' },
    });
  }

  /** The API's base URL, `…/v1`. */
  public get url(): string {
    return `${this.stage.url}v1`;
  }

  /** `API Gateway` metrics of the stage: `Count`, `4xx`, `5xx`, `Latency`, `IntegrationLatency`. */
  public apiMetric(metricName: string, statistic: string, period: Duration = Duration.minutes(1)) {
    return this.stage.metric(metricName, { statistic, period });
  }
}
