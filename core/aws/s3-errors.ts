/**
 * What an S3 error means to the caller:
 * - `missing`: no such key (404 `NoSuchKey`, `NotFound` from HEAD) or multipart upload
 *   (`NoSuchUpload`);
 * - `precondition-failed`: a conditional write lost, 412 `PreconditionFailed` for If-Match /
 *   If-None-Match (RFC 9110 §13.1) or 409 `ConditionalRequestConflict` when a concurrent one won;
 * - `throttled`: 503 `SlowDown`, S3's "reduce your request rate";
 * - `access-denied`: 403 `AccessDenied`;
 * - `other`: anything else (network, 5xx, a bug).
 */
export type S3ErrorKind = 'missing' | 'precondition-failed' | 'throttled' | 'access-denied' | 'other';

export interface S3ErrorContext {
  /**
   * The caller may read the key but has no s3:ListBucket on its prefix: S3 then answers a missing
   * key with 403 AccessDenied, not 404, so a 403 means missing.
   * @default false
   */
  readonly deniedMeansMissing?: boolean;
}

// By code, not by 404 alone: a missing bucket (`NoSuchBucket`) is a misconfiguration, not a missing key.
const MISSING = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload']);
const PRECONDITION_FAILED = new Set(['PreconditionFailed', 'ConditionalRequestConflict']);

/** Classifies an error thrown by an S3 client call, by its code, else by its HTTP status. */
export function classifyS3Error(error: unknown, context: S3ErrorContext = {}): S3ErrorKind {
  const { name, $metadata } = (error ?? {}) as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = $metadata?.httpStatusCode;
  if (name && MISSING.has(name)) return 'missing';
  if ((name && PRECONDITION_FAILED.has(name)) || status === 412 || status === 409)
    return 'precondition-failed';
  if (name === 'SlowDown') return 'throttled';
  if (name === 'AccessDenied' || status === 403)
    return context.deniedMeansMissing ? 'missing' : 'access-denied';
  return 'other';
}
