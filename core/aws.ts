import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { S3TextReader } from './config.ts';
import type { SecretStringReader } from './secrets.ts';

/** The config reader port over an S3 client (listener and functions build the client). */
export function s3TextReader(s3: S3Client): S3TextReader {
  return async (bucket, key) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return object.Body!.transformToString('utf8');
  };
}

/** The secret reader port over a Secrets Manager client. */
export function secretsManagerReader(client: SecretsManagerClient): SecretStringReader {
  return async (secretId) => {
    const secret = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
    if (secret.SecretString === undefined) throw new Error(`secret ${secretId} has no string value`);
    return secret.SecretString;
  };
}
