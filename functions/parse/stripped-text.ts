/**
 * Lines that start the quoted history in the common clients: Gmail and Apple Mail ("On … wrote:",
 * and its German, French, Spanish, Dutch and Portuguese forms), Outlook's separator lines, and a
 * forwarded-message banner.
 */
const ATTRIBUTION = [
  /^on\b.{0,300}\bwrote:?$/i,
  /^am\b.{0,300}\bschrieb\b.{0,100}:?$/i,
  /^le\b.{0,300}\ba écrit\s*:?$/i,
  /^el\b.{0,300}\bescribió\s*:?$/i,
  /^op\b.{0,300}\bschreef\b.{0,100}:?$/i,
  /^em\b.{0,300}\bescreveu\s*:?$/i,
];
const SEPARATOR = [
  /^-{2,}\s*original message\s*-{2,}$/i,
  /^-{2,}\s*forwarded message\s*-{2,}$/i,
  /^begin forwarded message:$/i,
  /^_{20,}$/,
];
// Outlook quotes with a header block: "From: …" followed within a few lines by "Sent:"/"Date:".
const OUTLOOK_FROM = /^\*?(from|von|de|van):\*?\s/i;
const OUTLOOK_SENT = /^\*?(sent|date|gesendet|envoyé|enviado|verzonden|datum):\*?\s/i;
// RFC 3676 §4.3 signature separator ("-- "; many clients lose the trailing space).
const SIGNATURE_SEPARATOR = /^-- ?$/;
// The footers mail apps add on their own ("Sent from my iPhone", "Get Outlook for Android", and
// their German, French, Spanish, Dutch and Portuguese forms): a signature too, kept with its line.
const DEVICE =
  '(iphone|ipad|ipod|android|samsung|galaxy|outlook|mail|yahoo|blackberry|huawei|xiaomi|pixel|aol|proton ?mail|mobile|phone|smartphone|tablet|apple watch)';
const APP_FOOTER = [
  new RegExp(String.raw`^sent (from|with|via) .{0,40}\b${DEVICE}\b.{0,30}$`, 'i'),
  /^get outlook for \S+$/i,
  /^von meinem .{1,40} gesendet\.?$/i,
  new RegExp(String.raw`^(envoyé|enviado) (de|desde|do|da) .{0,30}\b${DEVICE}\b.{0,20}$`, 'i'),
  new RegExp(String.raw`^verzonden (vanaf|met) .{0,30}\b${DEVICE}\b.{0,20}$`, 'i'),
];

/** Whether a line is a mail app's footer ("Sent from my iPhone", "Get Outlook for Android"). */
export function isAppFooter(line: string): boolean {
  return APP_FOOTER.some((pattern) => pattern.test(line));
}

function startsHistory(lines: readonly string[], index: number): boolean {
  const line = lines[index]!.trim();
  if (ATTRIBUTION.some((pattern) => pattern.test(line))) return true;
  // Gmail wraps a long attribution: "On Mon, 1 Jan 2024 at 10:00, Jane Doe <" / "jane@x.test> wrote:".
  const next = lines[index + 1]?.trim();
  if (next && /^(on|am|le|el|op|em)\b/i.test(line) && ATTRIBUTION.some((p) => p.test(`${line} ${next}`))) {
    return true;
  }
  if (SEPARATOR.some((pattern) => pattern.test(line))) return true;
  if (OUTLOOK_FROM.test(line)) {
    return lines.slice(index + 1, index + 5).some((later) => OUTLOOK_SENT.test(later.trim()));
  }
  return false;
}

/** Options of {@link splitReply}. */
export interface SplitReplyOptions {
  /**
   * Reply markers of the route ("## Please type your reply above this line ##"): the first line that
   * contains one, quoted or not, and everything after it are history. Compared case-insensitively.
   */
  readonly markers?: readonly string[];
}

/** A reply split into what the person typed and the signature under it. */
export interface SplitReply {
  readonly text: string;
  readonly signature: string | null;
}

function containsMarker(line: string, markers: readonly string[]): boolean {
  const lower = line.toLowerCase();
  return markers.some((marker) => marker.trim() !== '' && lower.includes(marker.trim().toLowerCase()));
}

const isQuoteOrBlank = (line: string) => /^\s*(>.*)?$/.test(line);

/**
 * Splits a reply: cuts the quoted history at the first reply marker, attribution line, Outlook
 * header block or separator, drops a trailing block of `>` quotes, and splits off the signature
 * (after a "-- " line, or from a mail app's "Sent from my iPhone" footer). Text interleaved with
 * quotes (inline replies) keeps its quotes, since the reply makes no sense without them.
 */
export function splitReply(text: string, options: SplitReplyOptions = {}): SplitReply {
  const markers = options.markers ?? [];
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let end = lines.length;
  for (let index = 0; index < lines.length; index++) {
    if (containsMarker(lines[index]!, markers) || startsHistory(lines, index)) {
      end = index;
      break;
    }
  }
  while (end > 0 && isQuoteOrBlank(lines[end - 1]!)) end--;
  let signature: string | null = null;
  for (let index = 0; index < end; index++) {
    const line = lines[index]!.trim();
    const separator = SIGNATURE_SEPARATOR.test(line);
    if (separator || isAppFooter(line)) {
      signature = lines
        .slice(separator ? index + 1 : index, end)
        .join('\n')
        .trim();
      end = index;
      break;
    }
  }
  return { text: lines.slice(0, end).join('\n').trim(), signature: signature || null };
}

/** The reply without its quoted history and signature: {@link splitReply}'s text. */
export function stripQuotedReply(text: string, options: SplitReplyOptions = {}): string {
  return splitReply(text, options).text;
}
