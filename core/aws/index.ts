/**
 * The I/O adapters of core's ports: the AWS SDK clients (S3, Secrets Manager, the presigner) and
 * the file system. Kept apart from core's index so that importing core loads no SDK.
 */
export type { Presign } from './adapters.ts';
export {
  configReaders,
  MAX_PRESIGN_SECONDS,
  s3EndpointHealthStore,
  s3Presigner,
  secretsManagerReader,
} from './adapters.ts';
export type { S3ErrorContext, S3ErrorKind } from './s3-errors.ts';
export { classifyS3Error } from './s3-errors.ts';
