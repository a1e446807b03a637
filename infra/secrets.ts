import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { type Config, ConfigError } from '../core/index.ts';

/** A secret the config refers to, with the fields that refer to it. */
interface Reference {
  readonly kind: 'certificate' | 'smtp-user' | 'signing';
  readonly jsonKey?: string;
  readonly field: string;
  readonly description: string;
}

export interface SecretsProps {
  /** The validated config; every Secrets Manager reference in it is collected. */
  readonly config: Config;
  /**
   * Create the SMTP AUTH passwords and signing secrets the config names (by name, not ARN), with
   * generated values. The TLS certificate is always provided by you, never created.
   * @default true
   */
  readonly create?: boolean;
}

// 32 characters of [A-Za-z0-9] are valid base64 (24 bytes), so a generated signing secret works as `whsec_<value>` or bare.
const GENERATED_LENGTH = 32;

/**
 * The Secrets Manager secrets the config refers to by name: the STARTTLS certificate (JSON
 * `{cert, key}`, yours), the SMTP AUTH passwords and the webhook signing secrets. Grants split them
 * between the listener (certificate, SMTP users) and the deliver function (signing secrets).
 */
export class Secrets extends Construct {
  /** The STARTTLS certificate and key (`tls.secretId`), read and reloaded by the listener. */
  public readonly certificate: ISecret;
  /** SMTP AUTH passwords (`auth.users[].password`). */
  public readonly smtpUsers: readonly ISecret[];
  /** Webhook signing secrets (`routes[].secret`). */
  public readonly signing: readonly ISecret[];
  /** The secrets this construct created (the rest are imported). */
  public readonly created: readonly Secret[];

  constructor(scope: Construct, id: string, props: SecretsProps) {
    super(scope, id);
    const { config } = props;
    const create = props.create ?? true;
    if (config.tls.source !== 'secrets-manager') {
      throw new ConfigError(this.node.path, [
        `tls.source: the AWS deployment reads the certificate from Secrets Manager ("secrets-manager"), not "${config.tls.source}"`,
      ]);
    }
    const references = new Map<string, Reference[]>();
    const add = (secretId: string, reference: Reference) => {
      references.set(secretId, [...(references.get(secretId) ?? []), reference]);
    };
    add(config.tls.secretId, {
      kind: 'certificate',
      field: 'tls.secretId',
      description: 'mailbridge STARTTLS certificate and key, JSON {"cert","key"} in PEM',
    });
    config.auth.users.forEach((user, u) => {
      if ('secretsManager' in user.password) {
        add(user.password.secretsManager, {
          kind: 'smtp-user',
          jsonKey: user.password.jsonKey,
          field: `auth.users[${u}].password`,
          description: `mailbridge SMTP AUTH password of ${user.user}`,
        });
      }
    });
    config.routes.forEach((route, r) => {
      route.secret.forEach((ref, s) => {
        if ('secretsManager' in ref) {
          add(ref.secretsManager, {
            kind: 'signing',
            jsonKey: ref.jsonKey,
            field: `routes[${r}].secret[${s}]`,
            description: `mailbridge webhook signing secret of route ${route.id} (receivers use whsec_<value>)`,
          });
        }
      });
    });

    const created: Secret[] = [];
    const bySecretId = new Map<string, ISecret>();
    for (const [secretId, refs] of references) {
      // The id (hence the logical id) is the secret's name: adding or removing another secret must
      // not move a logical id onto a different secret, which CloudFormation would replace.
      const constructId = secretId;
      const first = refs[0]!;
      const jsonKeys = new Set(refs.map((ref) => ref.jsonKey));
      if (jsonKeys.size > 1) {
        throw new Error(
          `${this.node.path}: ${refs.map((ref) => ref.field).join(', ')} read different jsonKeys of secret ${secretId}`,
        );
      }
      let secret: ISecret;
      if (secretId.startsWith('arn:')) {
        // A complete ARN ends in the 6 random characters Secrets Manager appends to the name.
        secret = /-[A-Za-z0-9]{6}$/.test(secretId)
          ? Secret.fromSecretCompleteArn(this, constructId, secretId)
          : Secret.fromSecretPartialArn(this, constructId, secretId);
      } else if (!create || refs.some((ref) => ref.kind === 'certificate')) {
        secret = Secret.fromSecretNameV2(this, constructId, secretId);
      } else {
        const generated = new Secret(this, constructId, {
          secretName: secretId,
          description: first.description,
          generateSecretString: {
            passwordLength: GENERATED_LENGTH,
            excludePunctuation: true,
            includeSpace: false,
            ...(first.jsonKey ? { secretStringTemplate: '{}', generateStringKey: first.jsonKey } : {}),
          },
        });
        // Clients and receivers hold the value: a replacement or removal by a deploy keeps the old
        // secret, and only a failed first create cleans up after itself.
        generated.applyRemovalPolicy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE);
        Validations.of(generated).acknowledge({
          id: 'AwsSolutions-SMG4',
          reason:
            'Automatic rotation would change an SMTP password or a webhook signing secret under the clients and receivers that hold it; rotation is done by hand with an overlap (a route takes several signing secrets), see docs/operations.md.',
        });
        created.push(generated);
        secret = generated;
      }
      bySecretId.set(secretId, secret);
    }
    const of = (kind: Reference['kind']) =>
      [...references]
        .filter(([, refs]) => refs.some((ref) => ref.kind === kind))
        .map(([name]) => bySecretId.get(name)!);
    this.certificate = of('certificate')[0]!;
    this.smtpUsers = of('smtp-user');
    this.signing = of('signing');
    this.created = created;
  }

  /** What the listener reads: the certificate (reloaded periodically) and the SMTP AUTH passwords. */
  public grantListenerRead(grantee: IGrantable): void {
    for (const secret of [this.certificate, ...this.smtpUsers]) secret.grantRead(grantee);
  }

  /** What the deliver function reads: the signing secrets. */
  public grantSigningRead(grantee: IGrantable): void {
    for (const secret of this.signing) secret.grantRead(grantee);
  }
}
