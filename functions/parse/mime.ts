import type { Readable } from 'node:stream';
import { htmlToText } from 'html-to-text';
import {
  type AddressObject,
  type AttachmentStream,
  type EmailAddress,
  type HeaderLines,
  type Headers,
  MailParser,
} from 'mailparser';
import type { WebhookAddress, WebhookMessage } from '../../core/index.ts';

/** Stores one attachment while the parser waits; gets its index in the message. */
export type AttachmentSink<T> = (attachment: AttachmentStream, index: number) => Promise<T>;

/** The message fields that come straight from the MIME structure. */
export type MimeFields = Omit<WebhookMessage, 'strippedText' | 'mailboxHash' | 'attachments' | 'truncated'>;

/**
 * What {@link parseMime} could read; `error` is set when the MIME broke part way, `warnings` name
 * values that could not be read (an invalid date, HTML that could not be made into text).
 */
export interface MimeResult<T> {
  readonly fields: MimeFields;
  readonly attachments: T[];
  readonly warnings: string[];
  readonly error?: Error;
}

/** An error of the input stream or of an attachment sink: I/O, so the caller retries. */
class MimeInputError extends Error {
  override name = 'MimeInputError';
}

// Large HTML without a text part is converted to text only up to this length: html-to-text is slow.
const MAX_HTML_TO_TEXT = 2_000_000;
// mailparser's own bound on HTML nesting for the conversion (html-to-text recurses per level).
const MAX_HTML_NESTING = 1000;

function addresses(value: unknown): WebhookAddress[] {
  const objects = ([] as unknown[]).concat(value ?? []) as AddressObject[];
  const flat = (list: EmailAddress[]): WebhookAddress[] =>
    list.flatMap((entry) =>
      entry.group ? flat(entry.group) : entry.address ? [{ name: entry.name, address: entry.address }] : [],
    );
  return objects.flatMap((object) => flat(object.value ?? []));
}

function rawValue(line: string): string {
  // mailsplit gives header bytes as latin1; 8-bit headers are UTF-8 in practice (RFC 6532).
  const decoded = /[\u0080-\u00ff]/.test(line) ? Buffer.from(line, 'latin1').toString('utf8') : line;
  const text = decoded.includes('\ufffd') ? line : decoded;
  // RFC 5322 §2.2.3: unfolding removes the CRLF, keeping the white space that follows it.
  return text
    .slice(line.indexOf(':') + 1)
    .replace(/\r?\n(?=[ \t])/g, '')
    .replace(/^[ \t]+/, '')
    .replace(/\r?\n$/, '');
}

function stringValue(value: unknown): string | null {
  const first = Array.isArray(value) ? value[0] : value;
  return typeof first === 'string' ? first : null;
}

const excerpt = (value: string) => JSON.stringify(value.slice(0, 100));

/**
 * The Date header in UTC ISO 8601, or null with a warning when it cannot be read or falls outside
 * the years ISO 8601 writes with four digits (0000-9999): `Date: 1 Jan 10000` would otherwise
 * become `+010000-01-01T…`, which no date-time parser takes.
 */
function dateValue(lines: readonly { name: string; value: string }[], warnings: string[]): string | null {
  const header = lines.find((line) => line.name.toLowerCase() === 'date');
  if (!header) return null;
  // mailparser substitutes "now" for an unparsable Date; a wrong date is worse than none.
  const time = Date.parse(header.value.replace(/\([^)]*\)/g, '').trim());
  const year = Number.isNaN(time) ? Number.NaN : new Date(time).getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) {
    warnings.push(`invalid_date: Date header ${excerpt(header.value)} is not a date in years 0000-9999`);
    return null;
  }
  return new Date(time).toISOString();
}

/**
 * Text made from HTML, for a message with no text part: mailparser does so only when the HTML is the
 * whole message, not when it sits in a multipart/mixed beside attachments.
 */
function textFromHtml(html: string, warnings: string[]): string | null {
  if (html.length > MAX_HTML_TO_TEXT) {
    warnings.push(`html_to_text_skipped: ${html.length} characters of HTML, over ${MAX_HTML_TO_TEXT}`);
    return null;
  }
  try {
    return htmlToText(html, { limits: { maxDepth: MAX_HTML_NESTING } });
  } catch (error) {
    warnings.push(`html_to_text_failed: ${(error as Error).message}`);
    return null;
  }
}

function fieldsFrom(
  headers: Headers | undefined,
  lines: HeaderLines | undefined,
  warnings: string[],
): MimeFields {
  const headerList = (lines ?? []).map(({ line }) => ({
    name: line.slice(0, Math.max(0, line.indexOf(':'))).trim(),
    value: rawValue(line),
  }));
  const get = (name: string) => headers?.get(name);
  const references = ([] as unknown[]).concat(get('references') ?? []);
  return {
    messageId: stringValue(get('message-id')),
    inReplyTo: stringValue(get('in-reply-to')),
    references: references.flatMap((ref) =>
      typeof ref === 'string' ? ref.split(/\s+/).filter(Boolean) : [],
    ),
    date: dateValue(headerList, warnings),
    subject: stringValue(get('subject')),
    from: addresses(get('from')),
    replyTo: addresses(get('reply-to')),
    to: addresses(get('to')),
    cc: addresses(get('cc')),
    headers: headerList,
    text: null,
    html: null,
  };
}

/**
 * Parses a message with the streaming `MailParser`, handing each attachment to `sink` while the
 * parser waits, so no attachment is held whole in memory here. Broken MIME does not throw: the
 * result carries what was read before the break and the `error`. Errors of the input stream or of
 * the sink do throw ({@link MimeInputError}), since retrying may fix them.
 */
export function parseMime<T>(input: Readable, sink: AttachmentSink<T>): Promise<MimeResult<T>> {
  const parser = new MailParser({
    checksumAlgo: false,
    skipTextToHtml: true,
    skipImageLinks: true,
    skipTextLinks: true,
    maxHtmlLengthToParse: MAX_HTML_TO_TEXT,
  });
  let headers: Headers | undefined;
  let lines: HeaderLines | undefined;
  let text: string | null = null;
  let html: string | null = null;
  const stored: Promise<T>[] = [];
  let sinkError: unknown;
  // Attachments whose content is still flowing: a parse error leaves them without an end.
  const flowing = new Set<Readable>();
  const cutShort = new Set<Readable>();

  parser.on('headers', (value) => {
    headers = value;
  });
  parser.on('headerLines', (value) => {
    lines = value;
  });
  const warnings: string[] = [];
  parser.on('data', (data) => {
    if (data.type === 'text') {
      text = data.text ?? null;
      html = data.html || null;
      if (data.textConversionError) warnings.push(`html_to_text_failed: ${data.textConversionError.message}`);
      return;
    }
    const index = stored.length;
    flowing.add(data.content);
    data.content.once('end', () => flowing.delete(data.content));
    const pending = sink(data, index)
      .catch((error: unknown) => {
        if (!cutShort.has(data.content)) sinkError ??= error;
        throw error;
      })
      .finally(() => data.release?.());
    // Settled together at the end; until then a failed store must not be an unhandled rejection,
    // which would end the Lambda process.
    pending.catch(() => {});
    stored.push(pending);
  });

  return new Promise<MimeResult<T>>((resolve, reject) => {
    let settled = false;
    const settle = async (error?: Error) => {
      if (settled) return;
      settled = true;
      if (error) {
        // An attachment cut short by the break is dropped rather than delivered truncated.
        for (const content of flowing) {
          cutShort.add(content);
          content.destroy(new Error('MIME parse failed inside this attachment'));
        }
        input.unpipe(parser);
        // Keep the input flowing: it may be teed into the authentication pass as well.
        input.resume();
      }
      const outcomes = await Promise.allSettled(stored);
      if (sinkError) {
        reject(
          new MimeInputError(`storing an attachment failed: ${(sinkError as Error).message}`, {
            cause: sinkError,
          }),
        );
        return;
      }
      const attachments = outcomes.flatMap((outcome) =>
        outcome.status === 'fulfilled' ? [outcome.value] : [],
      );
      const fields = fieldsFrom(headers, lines, warnings);
      resolve({
        fields: { ...fields, text: text ?? (html === null ? null : textFromHtml(html, warnings)), html },
        attachments,
        warnings,
        ...(error ? { error } : {}),
      });
    };
    input.once('error', (error) => {
      settled = true;
      parser.destroy();
      reject(new MimeInputError(`reading the message failed: ${error.message}`, { cause: error }));
    });
    parser.once('error', (error: Error) => void settle(error));
    parser.once('end', () => void settle());
    input.pipe(parser);
  });
}
