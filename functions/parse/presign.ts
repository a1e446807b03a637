import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';

/** Makes a GET link to an object that works without credentials until it expires. */
export type Presign = (bucket: string, key: string) => Promise<string>;

/** SigV4 presigned URLs last at most 7 days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/**
 * Presigns with the client's own credentials. A URL signed with temporary credentials (a Lambda
 * role's session) stops working when they expire, whatever its X-Amz-Expires says, so the expiry
 * is capped by the credentials' expiration when the SDK knows it. Lambda hands its role session
 * over in environment variables without an expiration, so the default stays at 6 hours, short
 * enough to sit within that session's life; receivers should fetch attachments when the webhook
 * arrives.
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
