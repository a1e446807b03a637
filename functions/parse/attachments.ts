import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { AttachmentStream } from 'mailparser';
import { attachmentKey } from '../../core/index.ts';
import { Measure } from './measure.ts';
import type { AttachmentSink } from './mime.ts';

/** An attachment stored in S3, measured on the way. */
export interface StoredAttachment {
  readonly key: string;
  readonly filename: string | null;
  readonly contentType: string;
  readonly size: number;
  readonly sha256: string;
  readonly disposition: string | null;
  readonly contentId: string | null;
  /** The bytes, kept when they are no larger than the sink's `keepUpTo` (for inline delivery). */
  readonly bytes: Buffer | undefined;
}

// RFC 6838 §4.2 type/subtype; anything else (a NUL, a parameter) is no valid Content-Type header.
const MEDIA_TYPE = /^[\w!#$&^.+-]{1,127}\/[\w!#$&^.+-]{1,127}$/;
const HEADER_FILENAME_CHARS = 200;

/**
 * The S3 object headers of an attachment. They come from the message, and a hostile value (a NUL
 * in the type, a 60 KB RFC 2231 name) would fail the upload on every retry, so they are reduced to
 * what an HTTP header carries; the payload keeps the values as parsed.
 */
function objectHeaders(contentType: string, filename: string | null) {
  const name = filename?.toWellFormed().slice(0, HEADER_FILENAME_CHARS);
  return {
    ContentType: MEDIA_TYPE.test(contentType) ? contentType : 'application/octet-stream',
    ...(name ? { ContentDisposition: `attachment; filename*=UTF-8''${encodeURIComponent(name)}` } : {}),
  };
}

/**
 * Streams each attachment to S3 (multipart beyond one part, so a large one is never held whole),
 * computing its size and SHA-256 on the way, and keeps a copy of those that fit in `keepUpTo`.
 */
export function s3AttachmentSink(
  s3: S3Client,
  bucket: string,
  messageId: string,
  keepUpTo: number,
): AttachmentSink<StoredAttachment> {
  return async (attachment: AttachmentStream, index: number) => {
    const filename = attachment.filename ?? null;
    const key = attachmentKey(messageId, index, filename);
    const measure = new Measure({ keepUpTo });
    // Not `measure` itself: lib-storage reads its `size` (0 at the start) as the body length and
    // then fails every attachment larger than one part.
    const body = new PassThrough();
    const upload = new Upload({
      client: s3,
      queueSize: 1,
      params: { Bucket: bucket, Key: key, Body: body, ...objectHeaders(attachment.contentType, filename) },
    });
    await Promise.all([pipeline(attachment.content, measure, body), upload.done()]);
    return {
      key,
      filename,
      contentType: attachment.contentType,
      size: measure.size,
      sha256: measure.sha256,
      disposition: attachment.contentDisposition ?? null,
      contentId: attachment.cid ?? null,
      bytes: measure.kept,
    };
  };
}
