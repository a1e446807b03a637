import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { AttachmentStream } from 'mailparser';
import { simpleParser } from 'mailparser';
import {
  type InboundEvent,
  parseAddress,
  type Route,
  type WebhookForwarded,
  type WebhookMessage,
  type WebhookPayload,
} from '../../core/index.ts';
import type { StoredAttachment } from './attachments.ts';
import { bounceFromReport, isDeliveryReport, readDeliveryReport } from './bounce.ts';
import { type UnpackedFields, unpackContainers } from './containers.ts';
import { messageFlags } from './flags.ts';
import { findForwarded, subjectSaysForward } from './forwarded.ts';
import type { AttachmentSink, MimeFields } from './mime.ts';
import { stripQuotedHtml } from './stripped-html.ts';
import { splitReply } from './stripped-text.ts';
import type { UnpackedFile } from './tnef.ts';

/** How the reply-by-email fields reach storage: the raw message, stored attachments, new ones. */
export interface ExtrasPorts {
  /** The raw message, read again for the parts of a delivery report. */
  readRaw(): Promise<Readable>;
  /** The bytes of a stored attachment (at most `maxBytes` of them). */
  readAttachment(attachment: StoredAttachment, maxBytes: number): Promise<Buffer>;
  /** Stores a file unpacked from a container as attachment number `index`. */
  storeAttachment: AttachmentSink<StoredAttachment>;
}

/** What {@link readMessageExtras} adds to every payload of one message. */
export interface MessageExtras {
  /** The message's attachments, then those unpacked from winmail.dat and .msg containers. */
  readonly attachments: (StoredAttachment & UnpackedFields)[];
  readonly warnings: string[];
  /** The message fields of one of the routes given (its reply markers shape the stripped text). */
  message(
    route: Route,
  ): Pick<WebhookMessage, 'strippedText' | 'strippedHtml' | 'signature' | 'flags' | 'bounce' | 'forwarded'>;
  /** `route.recipientDetails`: every recipient with its mailboxHash. */
  route(recipients: readonly string[]): Pick<WebhookPayload['route'], 'recipientDetails'>;
}

// A forwarded message's header block is at its start; this much of it is read.
const ATTACHED_HEADER_BYTES = 64 * 1024;

async function attachedMessageHeader(head: Buffer): Promise<WebhookForwarded | null> {
  const end = head.indexOf('\r\n\r\n');
  const parsed = await simpleParser(end >= 0 ? head.subarray(0, end + 4) : head, {
    skipHtmlToText: true,
    skipTextToHtml: true,
  });
  const from = ([] as { value: { name: string; address?: string }[] }[]).concat(parsed.from ?? [])[0]
    ?.value[0];
  return {
    from: from ? { name: from.name, address: from.address || null } : null,
    subject: parsed.subject ?? null,
    date: parsed.headerLines.find((line) => line.key === 'date')?.line.replace(/^date:\s*/i, '') ?? null,
  };
}

// An unpacked file as mailparser would hand it to the attachment sink, which reads its content,
// type, disposition, name and Content-ID.
function asAttachmentStream(file: UnpackedFile): AttachmentStream {
  return {
    type: 'attachment',
    content: Readable.from([file.content]),
    contentType: file.contentType,
    contentDisposition: 'attachment',
    filename: file.filename ?? undefined,
    cid: file.contentId ?? undefined,
    headers: new Map(),
    headerLines: [],
    checksum: '',
    related: false,
    release: () => {},
  } as unknown as AttachmentStream;
}

/**
 * The payload additions for reply-by-email apps (flags, bounce report, forwarded original, files
 * unpacked from winmail.dat and .msg attachments, reply text split by route markers, every
 * recipient's mailboxHash). Nothing here fails the message: what cannot be read becomes null with
 * a warning; only storage errors throw, so the record is retried.
 */
export async function readMessageExtras(
  input: {
    readonly fields: MimeFields;
    readonly attachments: readonly StoredAttachment[];
    readonly mailFrom: string;
    /** The routes the message goes to: each one's reply markers shape its stripped text. */
    readonly routes: readonly Route[];
  },
  ports: ExtrasPorts,
): Promise<MessageExtras> {
  const { fields } = input;
  const warnings: string[] = [];
  const unpacked = await unpackContainers(input.attachments, {
    read: (attachment) => ports.readAttachment(attachment, Number.POSITIVE_INFINITY),
    store: (file, index) => ports.storeAttachment(asAttachmentStream(file), index),
  });
  warnings.push(...unpacked.warnings);

  const deliveryReport = isDeliveryReport(fields.headers);
  let bounce: WebhookMessage['bounce'] = null;
  if (deliveryReport) {
    try {
      bounce = bounceFromReport(await readDeliveryReport(await ports.readRaw()));
    } catch (error) {
      warnings.push(`bounce_unreadable: ${(error as Error).message}`);
    }
  }

  let attachedMessage: WebhookForwarded | null = null;
  // A forward "as attachment" carries the original as message/rfc822; only a forward's is read.
  const attached =
    subjectSaysForward(fields.subject) &&
    input.attachments.find((attachment) => attachment.contentType.toLowerCase() === 'message/rfc822');
  if (attached) {
    try {
      attachedMessage = await attachedMessageHeader(
        await ports.readAttachment(attached, ATTACHED_HEADER_BYTES),
      );
    } catch (error) {
      warnings.push(`forward_unreadable: ${(error as Error).message}`);
    }
  }
  const forwarded = findForwarded({ subject: fields.subject, text: fields.text, attachedMessage });
  const flags = messageFlags({
    headers: fields.headers,
    mailFrom: input.mailFrom,
    deliveryReport,
    from: fields.from,
  });

  const byRoute = new Map(
    input.routes.map((route) => {
      const markers = route.replyMarkers;
      const reply = fields.text === null ? null : splitReply(fields.text, { markers });
      let strippedHtml: string | null = null;
      if (fields.html !== null) {
        try {
          strippedHtml = stripQuotedHtml(fields.html, { markers });
        } catch (error) {
          // Hostile HTML nested deeper than the serializer's stack: the full html is still sent.
          warnings.push(`stripped_html_failed: ${(error as Error).message}`);
        }
      }
      const message = {
        strippedText: reply?.text ?? null,
        strippedHtml,
        signature: reply?.signature ?? null,
        flags,
        bounce,
        forwarded,
      };
      return [route.id, message] as const;
    }),
  );

  return {
    attachments: unpacked.attachments,
    warnings: [...new Set(warnings)],
    message: (route) => byRoute.get(route.id)!,
    route: (recipients) => ({
      recipientDetails: recipients.map((address) => ({
        address,
        mailboxHash: parseAddress(address)?.mailboxHash ?? null,
      })),
    }),
  };
}

/** {@link ExtrasPorts} over the message's bucket, as the parse function uses them. */
export function s3ExtrasPorts(
  s3: S3Client,
  bucket: string,
  raw: InboundEvent['raw'],
  storeAttachment: AttachmentSink<StoredAttachment>,
): ExtrasPorts {
  return {
    async readRaw() {
      const object = await s3.send(new GetObjectCommand({ Bucket: raw.bucket, Key: raw.key }));
      return object.Body as Readable;
    },
    async readAttachment(attachment, maxBytes) {
      if (attachment.bytes) return attachment.bytes.subarray(0, maxBytes);
      const range = Number.isFinite(maxBytes) ? { Range: `bytes=0-${maxBytes - 1}` } : {};
      const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: attachment.key, ...range }));
      return Buffer.from(await object.Body!.transformToByteArray());
    },
    storeAttachment,
  };
}
