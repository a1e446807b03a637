import { formatConfigPath } from './config-text.ts';
import { type WebhookMessage, type WebhookPayload, WebhookPayloadSchema } from './payload.ts';

const MiB = 1024 * 1024;

/**
 * Caps of the webhook body, counted as JSON bytes (UTF-8, after escaping), since escaping is what
 * makes a body grow: a control byte becomes the six characters `\u0001`, so 38 MiB of them would
 * be 228 MiB of JSON.
 */
export const PAYLOAD_LIMITS = {
  /** `text`, and so `strippedText`, which is cut from it. */
  textBytes: 2 * MiB,
  htmlBytes: 2 * MiB,
  /** The whole body. */
  payloadBytes: 16 * MiB,
} as const;

/** When the whole body is over its cap even with every attachment linked: each list and value is cut to these. */
const FALLBACK_ITEMS = 100;
const FALLBACK_CHARS = 1000;

/** JSON bytes of the code unit at `index` (a surrogate pair counts as one), and how many units it spans. */
function jsonCharAt(value: string, index: number): [bytes: number, units: number] {
  const code = value.charCodeAt(index);
  if (code === 0x22 || code === 0x5c) return [2, 1];
  // \b \t \n \f \r have two-character escapes; other control characters become \u00XX.
  if (code < 0x20) return [code === 8 || code === 9 || code === 10 || code === 12 || code === 13 ? 2 : 6, 1];
  if (code < 0x80) return [1, 1];
  if (code < 0x800) return [2, 1];
  if (code >= 0xd800 && code <= 0xdbff) {
    const next = value.charCodeAt(index + 1);
    if (next >= 0xdc00 && next <= 0xdfff) return [4, 2];
  }
  // A lone surrogate is written as a \uXXXX escape (well-formed JSON.stringify, ES2019).
  if (code >= 0xd800 && code <= 0xdfff) return [6, 1];
  return [3, 1];
}

/**
 * `value` cut at a character boundary so that its JSON, quotes included, takes at most `maxBytes`;
 * `truncated` says whether anything was cut. Looks at no more than `maxBytes` characters.
 */
export function capJsonString(value: string, maxBytes: number): { value: string; truncated: boolean } {
  // Six bytes is the most one UTF-16 unit can take: short strings need no look.
  if (value.length * 6 + 2 <= maxBytes) return { value, truncated: false };
  let bytes = 2;
  for (let index = 0; index < value.length; ) {
    const [size, units] = jsonCharAt(value, index);
    if (bytes + size > maxBytes) return { value: value.slice(0, index), truncated: true };
    bytes += size;
    index += units;
  }
  return { value, truncated: false };
}

function* jsonPieces(value: unknown): Generator<string> {
  if (Array.isArray(value)) {
    yield '[';
    for (let index = 0; index < value.length; index++) {
      if (index > 0) yield ',';
      // As JSON.stringify: an undefined element is null.
      yield* value[index] === undefined ? ['null'] : jsonPieces(value[index]);
    }
    yield ']';
  } else if (value !== null && typeof value === 'object') {
    let first = true;
    yield '{';
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      yield `${first ? '' : ','}${JSON.stringify(key)}:`;
      first = false;
      yield* jsonPieces(item);
    }
    yield '}';
  } else {
    yield JSON.stringify(value) ?? 'null';
  }
}

/**
 * The JSON text of a plain data value (what JSON.stringify gives), in pieces of about `chunkChars`,
 * so a large payload is written out without ever being one string.
 */
export function* jsonChunks(value: unknown, chunkChars = 64 * 1024): Generator<string> {
  let pending = '';
  for (const piece of jsonPieces(value)) {
    pending += piece;
    if (pending.length >= chunkChars) {
      yield pending;
      pending = '';
    }
  }
  if (pending) yield pending;
}

/** UTF-8 bytes of the JSON of `value`, counted without building it. */
export function jsonByteLength(value: unknown): number {
  let bytes = 0;
  for (const piece of jsonPieces(value)) bytes += Buffer.byteLength(piece);
  return bytes;
}

/**
 * `text` and `html` cut to their caps, and `truncated` saying which were. `strippedText` is made
 * from the cut text, so it needs no cap of its own and `truncated.text` covers it.
 */
export function capBodies(
  bodies: { readonly text: string | null; readonly html: string | null },
  limits: Pick<typeof PAYLOAD_LIMITS, 'textBytes' | 'htmlBytes'> = PAYLOAD_LIMITS,
): Pick<WebhookMessage, 'text' | 'html' | 'truncated'> {
  const cap = (value: string | null, maxBytes: number) =>
    value === null ? { value, truncated: false } : capJsonString(value, maxBytes);
  const text = cap(bodies.text, limits.textBytes);
  const html = cap(bodies.html, limits.htmlBytes);
  return {
    text: text.value,
    html: html.value,
    truncated: { ...(text.truncated ? { text: true } : {}), ...(html.truncated ? { html: true } : {}) },
  };
}

/** Every string cut to `FALLBACK_CHARS` and every list to `FALLBACK_ITEMS`, recursively. */
function bounded<T>(value: T): T {
  if (typeof value === 'string') return value.slice(0, FALLBACK_CHARS) as T;
  if (Array.isArray(value)) return value.slice(0, FALLBACK_ITEMS).map(bounded) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, bounded(item)])) as T;
  }
  return value;
}

/**
 * Fits a payload under `maxBytes` of JSON, for a message whose bodies are already capped
 * ({@link capBodies}) and still too large: first the largest inline attachments are sent as
 * links instead (`linkOf(index)` gives the link of attachment `index`), then, if that is not
 * enough, the headers are left out and every other list and value of the message is cut short.
 * Each step adds a `payload_capped` warning; the raw link always has the whole message.
 */
export function fitPayload(
  payload: WebhookPayload,
  linkOf: (index: number) => string,
  maxBytes: number = PAYLOAD_LIMITS.payloadBytes,
): WebhookPayload {
  let size = jsonByteLength(payload);
  if (size <= maxBytes) return payload;
  const warnings = [...payload.warnings];
  const attachments = [...payload.message.attachments];
  const inline = attachments
    .flatMap((attachment, index) =>
      'content' in attachment ? [{ index, length: attachment.content.length }] : [],
    )
    .sort((a, b) => b.length - a.length);
  let linked = 0;
  for (const { index } of inline) {
    if (size <= maxBytes) break;
    const { content: _content, ...meta } = attachments[index] as Extract<
      WebhookPayload['message']['attachments'][number],
      { content: string }
    >;
    const link = { ...meta, url: linkOf(index) };
    size += jsonByteLength(link) - jsonByteLength(attachments[index]);
    attachments[index] = link;
    linked++;
  }
  if (linked > 0) {
    warnings.push(`payload_capped: ${linked} inline attachment(s) sent as links to fit ${maxBytes} bytes`);
  }
  const withLinks = { ...payload, message: { ...payload.message, attachments }, warnings };
  if (size <= maxBytes) return withLinks;
  const { text, html, strippedText, truncated, ...rest } = withLinks.message;
  warnings.push(
    `payload_capped: ${size} bytes of JSON with every attachment linked; headers left out, lists cut to ${FALLBACK_ITEMS} entries and values to ${FALLBACK_CHARS} characters`,
  );
  return {
    ...withLinks,
    message: { ...bounded(rest), headers: [], text, html, strippedText, truncated },
    warnings,
  };
}

/** Schema issues named in the reason a stored payload is refused; the rest are counted. */
const REPORTED_ISSUES = 3;

/**
 * Checks what the deliver function is about to send: the stored JSON (or inline payload, as its
 * JSON) must be a payload of {@link WebhookPayloadSchema}, or the receiver would get a body the
 * published schema does not describe. Returns why it is not one, or undefined when it is.
 */
export function storedPayloadProblem(stored: Uint8Array): string | undefined {
  let document: unknown;
  try {
    document = JSON.parse(Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).toString('utf8'));
  } catch (error) {
    return `not JSON: ${(error as Error).message}`;
  }
  const result = WebhookPayloadSchema.safeParse(document);
  if (result.success) return undefined;
  const { issues } = result.error;
  const named = issues
    .slice(0, REPORTED_ISSUES)
    .map((issue) => `${formatConfigPath(issue.path) || '(root)'}: ${issue.message}`);
  const more = issues.length > REPORTED_ISSUES ? `; and ${issues.length - REPORTED_ISSUES} more` : '';
  return `not a webhook payload: ${named.join('; ')}${more}`;
}

/** An S3 object, as a payload link refers to it before it is signed. */
export interface ObjectRef {
  readonly bucket: string;
  readonly key: string;
}

/**
 * What the stored payload holds where the webhook will have a presigned link: `s3://bucket/key`.
 * The deliver function signs it at each try ({@link fillLinks}), so no try carries a link that
 * died with the credentials that signed it, and a stored payload is the webhook body but for them.
 */
export function linkPlaceholder(ref: ObjectRef): string {
  return `s3://${ref.bucket}/${ref.key}`;
}

const LINK_FIELD = Buffer.from('"url":"s3://');
const LINK = /^s3:\/\/([^/]+)\/(.+)$/;

/**
 * The webhook body from a stored payload: every `"url":"s3://…"` value that `accept` allows is
 * replaced by the link `sign` makes for it, without parsing the document. The match cannot come
 * from the sender: in JSON text a quote inside a string is always escaped, so `"url":"` is always
 * a key named `url` and the start of its value, and every `url` key is one the payload schema
 * defines. `accept` bounds what may be signed anyway (the message's own objects).
 */
export async function fillLinks(
  stored: Uint8Array,
  sign: (ref: ObjectRef) => Promise<string>,
  accept: (ref: ObjectRef) => boolean,
): Promise<Buffer> {
  const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const found: { start: number; end: number; link: string }[] = [];
  for (let at = bytes.indexOf(LINK_FIELD); at !== -1; at = bytes.indexOf(LINK_FIELD, at + 1)) {
    const start = at + '"url":"'.length;
    const end = bytes.indexOf(0x22, start);
    if (end === -1) break;
    const link = bytes.toString('utf8', start, end);
    const match = LINK.exec(link);
    if (match && accept({ bucket: match[1]!, key: match[2]! })) found.push({ start, end, link });
  }
  if (found.length === 0) return bytes;
  const signed = new Map<string, Promise<string>>();
  for (const { link } of found) {
    if (signed.has(link)) continue;
    const [, bucket, key] = LINK.exec(link)!;
    signed.set(link, sign({ bucket: bucket!, key: key! }));
  }
  const urls = new Map(
    await Promise.all(
      [...signed].map(async ([link, url]) => [link, JSON.stringify(await url).slice(1, -1)] as const),
    ),
  );
  const segments: Buffer[] = [];
  let from = 0;
  for (const { start, end, link } of found) {
    segments.push(bytes.subarray(from, start), Buffer.from(urls.get(link)!));
    from = end;
  }
  segments.push(bytes.subarray(from));
  return Buffer.concat(segments);
}
