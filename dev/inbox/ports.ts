import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { classifyS3Error } from '../../core/aws/index.ts';
import { rawObjectKey } from '../../core/index.ts';

/**
 * Reads the raw message (RFC 5322, as received) of a webhook's message: the payload's `id` and
 * `receivedAt` name it. Undefined when it is not stored (any more).
 */
export type RawMessageReader = (message: {
  readonly id: string;
  readonly receivedAt: string;
}) => Promise<Readable | undefined>;

/** A {@link RawMessageReader} over the bucket the listener spools to (`raw/YYYY/MM/DD/<id>.eml`). */
export function s3RawReader(s3: S3Client, bucket: string): RawMessageReader {
  return async ({ id, receivedAt }) => {
    const when = new Date(receivedAt);
    if (!/^[0-9A-Z]{26}$/.test(id) || Number.isNaN(when.getTime())) return undefined;
    try {
      const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: rawObjectKey(id, when) }));
      return object.Body as Readable;
    } catch (error) {
      if (classifyS3Error(error) === 'missing') return undefined;
      throw error;
    }
  };
}

/** One try to deliver a webhook, as the local runtime records it. */
export interface DeliveryOutcome {
  readonly at: string;
  readonly messageId: string;
  readonly routeId: string;
  readonly endpoint: string;
  /** "delivered" (2xx), "retry_scheduled" (a retryable failure) or "failed" (dead-lettered). */
  readonly outcome: 'delivered' | 'retry_scheduled' | 'failed';
  /** The endpoint's HTTP status, or null when none came (network error, timeout). */
  readonly status: number | null;
  readonly error: string | null;
  /** 1 for the first try. */
  readonly attempt: number;
}

/**
 * Where the inbox learns about deliveries to endpoints other than itself: the failures are shown
 * beside the webhooks it received. The local runtime implements it from what its deliver function
 * records.
 */
export interface DeliveryOutcomeSource {
  /** Recent outcomes, oldest first. */
  recent(): Promise<readonly DeliveryOutcome[]>;
  /** Calls `listener` for each new outcome; returns the unsubscribe function. */
  subscribe(listener: (outcome: DeliveryOutcome) => void): () => void;
}
