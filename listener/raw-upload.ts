import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

/** Multipart parts are 5 MiB, the S3 minimum for every part but the last. */
export const PART_SIZE = 5 * 1024 * 1024;

/** The object {@link uploadStream} writes. */
export interface RawObject {
  readonly bucket: string;
  readonly key: string;
  readonly contentType: string;
}

/**
 * Streams `body` to one S3 object: a single PutObject when it ends within the first part, else a
 * multipart upload with one part in flight (reading pauses while a part uploads, which pauses the
 * sender through TCP). Rejects with the body's error or S3's; a multipart upload is then aborted,
 * so no part is left stored.
 *
 * Why not lib-storage's `Upload`: it concatenates each part into a fresh buffer and holds the
 * chunks of the next one meanwhile, so on a large message every part's bytes outlive V8's young
 * generation and pile up as old garbage until the external-memory limit forces a full collection
 * (a 50 MB message grew the listener's RSS by 55–73 MiB; docs/performance.md). Here a message
 * below one part keeps its chunks as they came, and a larger one copies them into one part buffer,
 * reused for every part, as soon as they arrive, so each chunk dies young.
 */
export async function uploadStream(
  s3: S3Client,
  object: RawObject,
  body: AsyncIterable<Buffer>,
  partSize = PART_SIZE,
): Promise<void> {
  const target = { Bucket: object.bucket, Key: object.key };
  let chunks: Buffer[] = [];
  let part: Buffer | undefined;
  let filled = 0;
  let uploadId: string | undefined;
  const parts: CompletedPart[] = [];

  const sendPart = async (bytes: Buffer) => {
    uploadId ??= (
      await s3.send(new CreateMultipartUploadCommand({ ...target, ContentType: object.contentType }))
    ).UploadId;
    const PartNumber = parts.length + 1;
    const { ETag } = await s3.send(
      new UploadPartCommand({ ...target, UploadId: uploadId, PartNumber, Body: bytes }),
    );
    parts.push({ PartNumber, ETag });
  };

  try {
    for await (const chunk of body) {
      let offset = 0;
      if (!part) {
        if (filled + chunk.length < partSize) {
          chunks.push(chunk);
          filled += chunk.length;
          continue;
        }
        // allocUnsafeSlow: a buffer of its own, never a slice of the shared pool.
        part = Buffer.allocUnsafeSlow(partSize);
        let at = 0;
        for (const kept of chunks) at += kept.copy(part, at);
        chunks = [];
      }
      while (offset < chunk.length) {
        const copied = chunk.copy(
          part,
          filled,
          offset,
          offset + Math.min(partSize - filled, chunk.length - offset),
        );
        filled += copied;
        offset += copied;
        if (filled === partSize) {
          await sendPart(part);
          filled = 0;
        }
      }
    }
    if (!part) {
      await s3.send(
        new PutObjectCommand({
          ...target,
          Body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, filled),
          ContentType: object.contentType,
        }),
      );
      return;
    }
    if (filled > 0) await sendPart(part.subarray(0, filled));
    await s3.send(
      new CompleteMultipartUploadCommand({
        ...target,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
  } catch (error) {
    if (uploadId) {
      await s3.send(new AbortMultipartUploadCommand({ ...target, UploadId: uploadId })).catch(() => {});
    }
    throw error;
  }
}
