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
// RFC 3676 §4.3 signature separator, plus the mobile clients' footers.
const SIGNATURE = [/^-- ?$/, /^sent from my \S+/i, /^get outlook for \S+/i];

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

/**
 * The reply without its quoted history: cuts at the first attribution line, Outlook header block or
 * separator, at a signature, and drops a trailing block of `>` quotes. Text interleaved with quotes
 * (inline replies) keeps its quotes, since the reply makes no sense without them.
 */
export function stripQuotedReply(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let end = lines.length;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (startsHistory(lines, index) || SIGNATURE.some((pattern) => pattern.test(line.trim()))) {
      end = index;
      break;
    }
  }
  while (end > 0 && /^\s*(>.*)?$/.test(lines[end - 1]!)) end--;
  return lines.slice(0, end).join('\n').trim();
}
