import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { decodeTime } from 'ulid';
import { ApiError, type ControlStore, type RetryPort, type StoredMessage } from '../core/control/index.ts';
import { type InboundEvent, InboundEventSchema, sqsJson } from '../core/index.ts';

/** The envelope fields a webhook shows, as far as they can be known after the session. */
type Envelope = Pick<InboundEvent['envelope'], 'mailFrom' | 'rcptTo' | 'helo' | 'remoteAddress' | 'tls'>;

/** Size and SHA-256 of a stored raw message, read once as a stream. */
export async function measureRaw(
  s3: S3Client,
  raw: { bucket: string; key: string },
): Promise<{ size: number; sha256: string }> {
  const object = await s3.send(new GetObjectCommand({ Bucket: raw.bucket, Key: raw.key }));
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of object.Body as Readable) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** The envelope as far as the listener's `Received:` trace header (RFC 5321 §4.4) tells it. */
export async function envelopeFromReceived(
  s3: S3Client,
  raw: { bucket: string; key: string },
): Promise<Envelope> {
  const object = await s3.send(
    new GetObjectCommand({ Bucket: raw.bucket, Key: raw.key, Range: 'bytes=0-4095' }),
  );
  const head = (await object.Body!.transformToString('latin1')).split(/\r?\n(?![ \t])/)[0] ?? '';
  const from = /^Received: from (\S+) \(\[([^\]]+)\]\)/.exec(head);
  const tls = /\(using (\S+) with cipher (\S+)\)/.exec(head);
  const rcpt = /\bfor <([^>]+)>;/.exec(head);
  return {
    mailFrom: '',
    rcptTo: rcpt ? [rcpt[1]!] : [],
    helo: from?.[1] ?? '',
    remoteAddress: from?.[2] ?? '',
    tls: tls ? { protocol: tls[1]!, cipher: tls[2]! } : null,
  };
}

/**
 * The InboundEvent of a logged message, rebuilt from its `received` event and raw object: what
 * parse needs to build the same payloads again (same id, so the same webhook ids), with the
 * filtering facts the listener decided on, so a retry holds back what was quarantined and
 * delivers the verdicts as they were. The TLS details come from the trace header; ports and the
 * AUTH user are not kept after the session and parse does not use them. Undefined when the log
 * holds no `received` event or no raw object.
 */
export async function inboundEventFromLog(
  message: StoredMessage,
  s3: S3Client,
): Promise<InboundEvent | undefined> {
  const received = message.timeline.find((event) => event.type === 'received');
  if (!received || !message.raw) return undefined;
  const [trace, measured] = await Promise.all([
    envelopeFromReceived(s3, message.raw),
    received.sha256 ? { size: received.size, sha256: received.sha256 } : measureRaw(s3, message.raw),
  ]);
  return InboundEventSchema.parse({
    version: 1,
    id: message.id,
    // The id holds the time the listener took the message, which the payload says; the received
    // event's own time is later (after the upload and the queueing).
    receivedAt: new Date(decodeTime(message.id)).toISOString(),
    raw: { ...message.raw, ...measured },
    envelope: {
      mailFrom: received.mailFrom,
      rcptTo: received.rcptTo,
      helo: received.helo,
      remoteAddress: received.remoteAddress,
      remotePort: 0,
      localPort: 0,
      tls: received.tls ? trace.tls : null,
      authUser: null,
    },
    ...(received.filtering ? { filtering: received.filtering } : {}),
  } satisfies InboundEvent);
}

export interface InboundRetryPortDeps {
  readonly store: Pick<ControlStore, 'getMessage'>;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** The inbound queue: parse takes the message from there as it took it from the listener. */
  readonly inboundQueueUrl: string;
}

/**
 * `POST /v1/messages/{id}/retry` on the pipeline: the message's InboundEvent, rebuilt from the log,
 * goes back on the inbound queue (with `onlyRoute` when one route is asked), so parse builds the
 * payloads again from the raw message and queues fresh jobs, by the routes in force then, under the
 * same webhook ids. It answers no jobs: only parse knows them, and its `parsed` event lists them.
 * One SQS message, whatever the size of the mail, and the same path in AWS and locally (over the
 * emulator).
 */
export function inboundRetryPort(deps: InboundRetryPortDeps): RetryPort {
  return {
    async retry({ messageId, route, release }) {
      const message = await deps.store.getMessage(messageId);
      if (!message) throw new ApiError(404, 'not_found', `message ${messageId} not found`);
      const event = await inboundEventFromLog(message, deps.s3);
      if (!event) {
        throw new ApiError(
          409,
          'conflict',
          `message ${messageId}: the log has no received event or raw copy to deliver it from; replay it with the CLI`,
        );
      }
      // A release lifts the routes' quarantine actions for this run of parse only. Without facts
      // (a message received before filtering ran) nothing is held back, so nothing is lifted.
      const released =
        release && event.filtering ? { ...event, filtering: { ...event.filtering, released: true } } : event;
      const body = sqsJson(route === null ? released : { ...released, onlyRoute: route });
      await deps.sqs.send(new SendMessageCommand({ QueueUrl: deps.inboundQueueUrl, MessageBody: body }));
      return [];
    },
  };
}
