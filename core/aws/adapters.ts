import { readFile } from 'node:fs/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { endpointHealthKey } from '../bucket-keys.ts';
import type { ConfigReaders } from '../config.ts';
import {
  EndpointHealthDocumentSchema,
  type EndpointHealthStore,
  HEALTHY_ENDPOINT,
} from '../endpoint-health.ts';
import type { SecretStringReader } from '../secrets.ts';
import { classifyS3Error } from './s3-errors.ts';

/**
 * The config reader ports: files from the file system, `s3://` URLs through `s3` when given
 * (listener and functions build the client).
 */
export function configReaders(s3?: S3Client): ConfigReaders {
  return {
    file: (path) => readFile(path, 'utf8'),
    ...(s3 && {
      s3Text: async (bucket: string, key: string) => {
        const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return object.Body!.transformToString('utf8');
      },
    }),
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

/** Makes a GET link to an object that works without credentials until it expires. */
export type Presign = (bucket: string, key: string) => Promise<string>;

/** SigV4 presigned URLs last at most 7 days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/**
 * Presigns with the client's own credentials; deliver signs a payload's links at every try. A URL signed with temporary credentials (a Lambda role's session) stops
 * working when they expire, whatever its X-Amz-Expires says, so the expiry is capped by the
 * credentials' expiration when the SDK knows it. Lambda hands its role session over in environment
 * variables without an expiration, so the default stays at 6 hours, short enough to sit within that
 * session's life; receivers should fetch attachments when the webhook arrives.
 */
export function s3Presigner(
  s3: S3Client,
  options: { expiresInSeconds?: number; now?: () => Date } = {},
): Presign {
  const wanted = Math.min(options.expiresInSeconds ?? 6 * 3600, MAX_PRESIGN_SECONDS);
  const now = options.now ?? (() => new Date());
  return async (bucket, key) => {
    const credentials = await s3.config.credentials();
    const left = credentials.expiration
      ? Math.floor((credentials.expiration.getTime() - now().getTime()) / 1000)
      : Number.POSITIVE_INFINITY;
    const expiresIn = Math.max(1, Math.min(wanted, left));
    return getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn,
      signingDate: now(),
    });
  };
}

/**
 * Endpoint health in the mail bucket, one object per endpoint at {@link endpointHealthKey}. A read
 * lists the key before getting it: without s3:ListBucket S3 answers a missing object with 403, not
 * 404, and ListBucket can be granted for the `endpoint-health/` prefix alone, where GetObject cannot
 * tell absent from denied. Writes are conditional (If-Match / If-None-Match), so of two concurrent
 * writers one is told to read again.
 */
export function s3EndpointHealthStore(s3: S3Client, bucket: string): EndpointHealthStore {
  return {
    async read(endpoint) {
      const key = endpointHealthKey(endpoint);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 }));
      if (!listed.Contents?.some((object) => object.Key === key))
        return { state: HEALTHY_ENDPOINT, etag: undefined };
      try {
        const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const { endpoint: _endpoint, ...state } = EndpointHealthDocumentSchema.parse(
          JSON.parse(await object.Body!.transformToString('utf8')),
        );
        return { state, etag: object.ETag };
      } catch (error) {
        // Removed between the list and the get (a re-enable).
        if (classifyS3Error(error) === 'missing') return { state: HEALTHY_ENDPOINT, etag: undefined };
        throw error;
      }
    },
    async write(endpoint, state, etag) {
      try {
        await s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: endpointHealthKey(endpoint),
            Body: JSON.stringify({ endpoint, ...state }),
            ContentType: 'application/json',
            ...(etag === undefined ? { IfNoneMatch: '*' } : { IfMatch: etag }),
          }),
        );
        return true;
      } catch (error) {
        if (classifyS3Error(error) === 'precondition-failed') return false;
        throw error;
      }
    },
    async remove(endpoint) {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: endpointHealthKey(endpoint) }));
    },
  };
}
