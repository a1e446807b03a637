import { createHash } from 'node:crypto';
import { RemovalPolicy } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { AwsCustomResource, Logging, PhysicalResourceId } from 'aws-cdk-lib/custom-resources';
import { Construct, type IConstruct } from 'constructs';
import { CONFIG_OBJECT_KEY, ENV } from '../core/index.ts';
import type { Storage } from './storage.ts';

export interface DeployedConfigProps {
  /** The bucket the config is written to, at `config/mailbridge.json`. */
  readonly storage: Storage;
  /** The config document, JSON. Validated before it gets here (settings.ts). */
  readonly json: string;
  /**
   * Retention of the writer function's logs.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
}

/**
 * Writes the config to `s3://<bucket>/config/mailbridge.json` at deploy time, so routes change with
 * `cdk deploy` and no image rebuild. An SDK call (PutObject on that one key) rather than a
 * BucketDeployment, whose role could delete any object in the bucket and which needs the AWS CLI layer.
 */
export class DeployedConfig extends Construct {
  /** `s3://bucket/config/mailbridge.json`, for `MAILBRIDGE_CONFIG`. */
  public readonly url: string;
  /** SHA-256 of the document: put in the environment of every reader so a change rolls them. */
  public readonly sha256: string;
  public readonly resource: AwsCustomResource;
  /** Where a reader finds the config, for its environment: `MAILBRIDGE_RUNTIME`, `MAILBRIDGE_CONFIG` and the hash. */
  public readonly environment: Readonly<Record<string, string>>;
  readonly #storage: Storage;

  constructor(scope: Construct, id: string, props: DeployedConfigProps) {
    super(scope, id);
    const { bucket } = props.storage;
    this.sha256 = createHash('sha256').update(props.json).digest('hex');
    this.url = `s3://${bucket.bucketName}/${CONFIG_OBJECT_KEY}`;
    this.#storage = props.storage;
    this.environment = { [ENV.runtime]: 'aws', [ENV.config]: this.url, [ENV.configSha256]: this.sha256 };

    const role = new Role(this, 'Role', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    props.storage.grantWriteConfig(role);
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    logGroup.grantWrite(role);

    const put = {
      service: 'S3',
      action: 'putObject',
      parameters: {
        Bucket: bucket.bucketName,
        Key: CONFIG_OBJECT_KEY,
        Body: props.json,
        ContentType: 'application/json',
      },
      physicalResourceId: PhysicalResourceId.of(`${CONFIG_OBJECT_KEY}@${this.sha256}`),
      logging: Logging.withDataHidden(),
    };
    // Deleting the stack leaves the object: the bucket (and its mail) is retained too.
    this.resource = new AwsCustomResource(this, 'Put', {
      onCreate: put,
      onUpdate: put,
      role,
      logGroup,
      installLatestAwsSdk: false,
    });
  }

  /** Lets `reader` read the config object, and makes it wait for the object to be written. */
  public addReader(reader: IConstruct, grantee: IGrantable): void {
    this.#storage.grantReadConfig(grantee);
    reader.node.addDependency(this);
  }
}
