import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { type IKey, Key } from 'aws-cdk-lib/aws-kms';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type CfnBucket,
  type IBucket,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { BUCKET_PREFIXES, CONFIG_OBJECT_KEY } from '../core/index.ts';

export interface StorageProps {
  /**
   * Server-side encryption of the mail bucket.
   * @default - 'kms' when `encryptionKey` is given, otherwise 's3' (S3-managed keys, no KMS charges)
   */
  readonly encryption?: 's3' | 'kms';
  /**
   * The KMS key for `encryption: 'kms'`.
   * @default - a new key with yearly rotation, when `encryption` is 'kms'
   */
  readonly encryptionKey?: IKey;
  /**
   * Keep every version of an object (noncurrent versions expire after 7 days).
   * @default false
   */
  readonly versioned?: boolean;
  /**
   * Days raw messages (`raw/`) are kept.
   * @default 30
   */
  readonly rawRetentionDays?: number;
  /**
   * Days webhook payloads (`payloads/`) are kept; they must outlive the delivery DLQ for a redrive.
   * @default 30
   */
  readonly payloadRetentionDays?: number;
  /**
   * Days stored attachments (`attachments/`) are kept.
   * @default 30
   */
  readonly attachmentRetentionDays?: number;
  /**
   * What happens to the mail bucket when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE - stored mail survives `cdk destroy`; a failed first deploy removes the empty bucket
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Receives the mail bucket's server access logs (and the VPC flow logs, with `vpc.flowLogs`).
   * @default - a new bucket, retained, logs expire after 90 days
   */
  readonly accessLogsBucket?: IBucket;
}

/**
 * The mail bucket: raw messages, webhook payloads, attachments and the deployed config. Encrypted,
 * public access blocked, TLS only, lifecycle per prefix. Grants are per prefix and action.
 */
export class Storage extends Construct {
  public readonly bucket: Bucket;
  public readonly accessLogsBucket: IBucket;
  public readonly encryptionKey?: IKey;

  constructor(scope: Construct, id: string, props: StorageProps = {}) {
    super(scope, id);
    const encryption = props.encryption ?? (props.encryptionKey ? 'kms' : 's3');
    if (encryption === 's3' && props.encryptionKey) {
      throw new Error(
        `${this.node.path}: encryptionKey given with encryption 's3'; use 'kms' or drop the key`,
      );
    }
    const retention = {
      raw: props.rawRetentionDays ?? 30,
      payloads: props.payloadRetentionDays ?? 30,
      attachments: props.attachmentRetentionDays ?? 30,
    };
    for (const [name, days] of Object.entries(retention)) {
      if (!Number.isInteger(days) || days < 1)
        throw new Error(`${this.node.path}: ${name} retention must be ≥ 1 day`);
    }
    const versioned = props.versioned ?? false;

    this.accessLogsBucket = props.accessLogsBucket ?? this.createAccessLogsBucket();
    this.encryptionKey =
      encryption === 'kms'
        ? (props.encryptionKey ??
          new Key(this, 'Key', {
            enableKeyRotation: true,
            description: 'mailbridge mail bucket',
            // Retained mail stays readable only with its key.
            removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
          }))
        : undefined;

    this.bucket = new Bucket(this, 'Bucket', {
      encryption: this.encryptionKey ? BucketEncryption.KMS : BucketEncryption.S3_MANAGED,
      encryptionKey: this.encryptionKey,
      bucketKeyEnabled: this.encryptionKey ? true : undefined,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'mail-bucket/',
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      lifecycleRules: [
        { id: 'orphan-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        ...Object.entries(retention).map(([name, days]) => ({
          id: `expire-${name}`,
          prefix: BUCKET_PREFIXES[name as keyof typeof retention],
          expiration: Duration.days(days),
          noncurrentVersionExpiration: versioned ? Duration.days(7) : undefined,
        })),
      ],
    });
  }

  private createAccessLogsBucket(): Bucket {
    const logs = new Bucket(this, 'AccessLogs', {
      // S3 server access logging delivers only to SSE-S3 buckets.
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      lifecycleRules: [
        {
          id: 'expire-logs',
          expiration: Duration.days(90),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
    Validations.of(logs).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'This bucket is the access-log destination itself; logging it would write logs about logs in a loop.',
    });
    return logs;
  }

  /** Store raw messages: PutObject and AbortMultipartUpload (the listener streams DATA as a multipart upload). */
  public grantPutRaw(grantee: IGrantable): Grant {
    return this.grantObjects(
      grantee,
      ['s3:PutObject', 's3:AbortMultipartUpload'],
      [`${BUCKET_PREFIXES.raw}*`],
      true,
    );
  }

  /** Read raw messages. */
  public grantReadRaw(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:GetObject'], [`${BUCKET_PREFIXES.raw}*`], false);
  }

  /** Write webhook payloads and attachments (attachments may be multipart uploads). */
  public grantWritePayloads(grantee: IGrantable): Grant {
    return this.grantObjects(
      grantee,
      ['s3:PutObject', 's3:AbortMultipartUpload'],
      [`${BUCKET_PREFIXES.payloads}*`, `${BUCKET_PREFIXES.attachments}*`],
      true,
    );
  }

  /** Write webhook payloads only (one PutObject each, no multipart). */
  public grantPutPayloads(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:PutObject'], [`${BUCKET_PREFIXES.payloads}*`], true);
  }

  /** Read attachments, so the grantee can presign links to them. */
  public grantReadAttachments(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:GetObject'], [`${BUCKET_PREFIXES.attachments}*`], false);
  }

  /** Read webhook payloads. */
  public grantReadPayloads(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:GetObject'], [`${BUCKET_PREFIXES.payloads}*`], false);
  }

  /**
   * Read and write endpoint health (`endpoint-health/`), with ListBucket on that prefix only: a read
   * lists the key first, as S3 answers a missing object with 403 to a reader who may not list.
   */
  public grantEndpointHealth(grantee: IGrantable): Grant {
    Grant.addToPrincipal({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [this.bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': `${BUCKET_PREFIXES.endpointHealth}*` } },
    });
    return this.grantObjects(
      grantee,
      ['s3:GetObject', 's3:PutObject'],
      [`${BUCKET_PREFIXES.endpointHealth}*`],
      true,
    );
  }

  /** Read the deployed config object, and nothing else. */
  public grantReadConfig(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:GetObject'], [CONFIG_OBJECT_KEY], false);
  }

  /** Write the deployed config object, and nothing else. */
  public grantWriteConfig(grantee: IGrantable): Grant {
    return this.grantObjects(grantee, ['s3:PutObject'], [CONFIG_OBJECT_KEY], true);
  }

  /** `actions` on the objects matching `keys` (a key, or a prefix ending in `*`), plus the bucket key if any. */
  private grantObjects(grantee: IGrantable, actions: string[], keys: string[], write: boolean): Grant {
    const grant = Grant.addToPrincipal({
      grantee,
      actions,
      resourceArns: keys.map((key) => this.bucket.arnForObjects(key)),
    });
    this.grantKey(grantee, write);
    const principal = grantee.grantPrincipal;
    if (Construct.isConstruct(principal)) {
      const bucketId = Stack.of(this).getLogicalId(this.bucket.node.defaultChild as CfnBucket);
      for (const prefix of keys.filter((key) => key.endsWith('*'))) {
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${prefix}]`,
          reason: `Object keys under ${prefix.slice(0, -1)} are named per message id at run time, so the grant covers the prefix; it is limited to ${actions.join(', ')} on that prefix only.`,
        });
      }
    }
    return grant;
  }

  /** Use of the bucket key, when there is one. A multipart upload under SSE-KMS also decrypts the data key to assemble the parts. */
  private grantKey(grantee: IGrantable, write: boolean): void {
    if (!this.encryptionKey) return;
    if (!write) {
      this.encryptionKey.grantDecrypt(grantee);
      return;
    }
    this.encryptionKey.grantEncryptDecrypt(grantee);
    acknowledgeKeyWrites(grantee, "the mail bucket's key");
  }
}

/**
 * Acknowledges cdk-nag's finding on the wildcard actions of a KMS encrypt grant (`grantEncryptDecrypt`),
 * for a grantee that writes data encrypted with `key` (named in the reason).
 */
export function acknowledgeKeyWrites(grantee: IGrantable, key: string): void {
  const principal = grantee.grantPrincipal;
  if (!Construct.isConstruct(principal)) return;
  for (const action of ['kms:GenerateDataKey*', 'kms:ReEncrypt*']) {
    Validations.of(principal).acknowledge({
      id: `AwsSolutions-IAM5[Action::${action}]`,
      reason: `${action} is how the KMS encrypt grant for encrypted writes is expressed; it applies to ${key} only.`,
    });
  }
}
