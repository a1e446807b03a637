import type { Readable, Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Splitter } from '@zone-eu/mailsplit';
import type { WebhookBounce } from '../../core/index.ts';
import { headerValue, type MessageHeader } from './flags.ts';

/** One recipient's report of a delivery-status part (RFC 3464 §2.3). */
export interface RecipientReport {
  readonly action: string | null;
  readonly status: string | null;
  readonly finalRecipient: string | null;
  readonly originalRecipient: string | null;
  readonly diagnosticCode: string | null;
}

/** RFC 3462 multipart/report with report-type delivery-status (RFC 6533's global form too). */
export function isDeliveryReport(headers: readonly MessageHeader[]): boolean {
  const type = headerValue(headers, 'content-type') ?? '';
  return (
    /^\s*multipart\/report\s*;/i.test(type) && /report-type\s*=\s*"?(global-)?delivery-status"?/i.test(type)
  );
}

// "rfc822; a@b" → "a@b" (RFC 3464 §2.3.2 address-type; address).
function withoutType(value: string | null): string | null {
  if (value === null) return null;
  const semicolon = value.indexOf(';');
  return (semicolon >= 0 ? value.slice(semicolon + 1) : value).trim().replace(/^<(.*)>$/, '$1') || null;
}

/**
 * Reads the per-recipient field groups of a message/delivery-status body (RFC 3464 §2.1: a
 * per-message group, then one group per recipient, separated by blank lines; fields may fold).
 */
export function parseDeliveryStatus(body: string): RecipientReport[] {
  const groups = body
    .replace(/\r\n?/g, '\n')
    .replace(/\n[ \t]+/g, ' ')
    .split(/\n\s*\n/)
    .map((group) => {
      const fields = new Map<string, string>();
      for (const line of group.split('\n')) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        if (!fields.has(name)) fields.set(name, line.slice(colon + 1).trim());
      }
      return fields;
    });
  return groups
    .filter((fields) => fields.has('final-recipient') || fields.has('action'))
    .map((fields) => ({
      action: fields.get('action')?.toLowerCase() || null,
      status: /\d\.\d{1,3}\.\d{1,3}/.exec(fields.get('status') ?? '')?.[0] ?? null,
      finalRecipient: withoutType(fields.get('final-recipient') ?? null),
      originalRecipient: withoutType(fields.get('original-recipient') ?? null),
      diagnosticCode: fields.get('diagnostic-code') || null,
    }));
}

/** The parts of a delivery report that say what happened and to which message. */
export interface DeliveryReportParts {
  /** The message/delivery-status body, decoded. */
  readonly deliveryStatus: string | null;
  /** The Message-ID of the returned message (message/rfc822) or headers (text/rfc822-headers). */
  readonly originalMessageId: string | null;
}

const MAX_PART_BYTES = 256 * 1024;

// The Message-ID of a header block: only the header, before the first empty line.
const firstMessageId = (text: string) =>
  /^message-id:[ \t]*(<[^>\r\n]*>)/im.exec(text.split(/\r?\n\r?\n/, 1)[0]!)?.[1] ?? null;
const RETURNED = new Set([
  'text/rfc822-headers',
  'message/global-headers',
  'message/rfc822',
  'message/global',
]);

/**
 * Walks the MIME tree of a report (mailsplit) and keeps its delivery-status body and the returned
 * message's Message-ID. mailparser reads a message/delivery-status part as body text, so the parts
 * are found here. Reads at most `maxBytes` of the message: the report parts come before the
 * returned message, which can be large and is not needed beyond its header.
 */
export async function readDeliveryReport(
  raw: Readable,
  maxBytes = 4 * 1024 * 1024,
): Promise<DeliveryReportParts> {
  const splitter = new Splitter({ maxHeadSize: 256 * 1024 });
  let deliveryStatus: string | null = null;
  let originalMessageId: string | null = null;
  let collecting:
    | { decoder: Transform; chunks: Buffer[]; size: number; kind: 'status' | 'headers' }
    | undefined;
  let afterRfc822 = false;
  let read = 0;

  // A part's body goes through its transfer decoding (RFC 2045 §6), up to MAX_PART_BYTES of it.
  const collect = (node: { getDecoder(): Transform }, kind: 'status' | 'headers') => {
    const part = { decoder: node.getDecoder(), chunks: [] as Buffer[], size: 0, kind };
    part.decoder.on('data', (chunk: Buffer) => {
      if (part.size >= MAX_PART_BYTES) return;
      part.chunks.push(chunk);
      part.size += chunk.length;
    });
    collecting = part;
  };
  const finish = async () => {
    const part = collecting;
    if (!part) return;
    collecting = undefined;
    part.decoder.end();
    await finished(part.decoder);
    const text = Buffer.concat(part.chunks).toString('utf8');
    if (part.kind === 'status') deliveryStatus ??= text;
    else originalMessageId ??= firstMessageId(text);
  };
  const done = () => deliveryStatus !== null && originalMessageId !== null;

  const parts = raw.pipe(splitter);
  raw.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read <= maxBytes) return;
    raw.unpipe(splitter);
    splitter.end();
  });
  try {
    for await (const data of parts) {
      if (data.type === 'node') {
        await finish();
        const type = String(data.contentType || '').toLowerCase();
        // mailsplit gives a returned message either as its own node (its header is ours) or as the
        // body of the message/rfc822 node (its first lines are).
        if (afterRfc822) originalMessageId ??= firstMessageId(data.getHeaders().toString());
        afterRfc822 = type === 'message/rfc822' || type === 'message/global';
        if (type === 'message/delivery-status' || type === 'message/global-delivery-status')
          collect(data, 'status');
        else if (RETURNED.has(type)) collect(data, 'headers');
        if (done()) break;
      } else if (data.type === 'body' && collecting) {
        afterRfc822 = false;
        collecting.decoder.write(data.value);
      }
    }
    await finish();
  } finally {
    raw.destroy();
    splitter.destroy();
  }
  return { deliveryStatus, originalMessageId };
}

/**
 * The `message.bounce` of a delivery report: the first recipient whose action is "failed" (else the
 * first one reported), with the original Message-ID; null when nothing readable was reported.
 */
export function bounceFromReport(parts: DeliveryReportParts): WebhookBounce | null {
  const reports = parts.deliveryStatus ? parseDeliveryStatus(parts.deliveryStatus) : [];
  const report = reports.find((candidate) => candidate.action === 'failed') ?? reports[0];
  if (!report && !parts.originalMessageId) return null;
  return {
    action: report?.action ?? null,
    status: report?.status ?? null,
    finalRecipient: report?.finalRecipient ?? report?.originalRecipient ?? null,
    diagnosticCode: report?.diagnosticCode ?? null,
    originalMessageId: parts.originalMessageId,
  };
}
