import type { WebhookForwarded } from '../../core/index.ts';

// Subject prefixes of a forward: English, German (WG), French (TR), Spanish/Portuguese (RV, ENC),
// Dutch (Doorst), Swedish/Danish/Norwegian (VB), Italian (I).
const FORWARD_SUBJECT = /^\s*(\[?(fwd?|fw|wg|tr|rv|enc|doorst|vb|vs|i)\]?\s*:\s*)+/i;

// The banner a client writes above an inline forward: Gmail and Thunderbird (in their languages),
// Apple Mail.
const FORWARD_BANNER = [
  /^-{5,}\s*(forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|mensagem encaminhada|doorgestuurd bericht)\s*-{5,}$/i,
  /^begin forwarded message:$/i,
];
// Outlook's separators (desktop and web; older versions) sit above replies too.
const OUTLOOK_SEPARATOR = [/^-{5,}\s*original message\s*-{5,}$/i, /^_{20,}$/];

const FIELD = {
  from: /^(from|von|de|van|da)$/i,
  subject: /^(subject|betreff|objet|asunto|assunto|onderwerp|oggetto)$/i,
  date: /^(date|sent|datum|gesendet|envoyé|enviado|fecha|verzonden|data|inviato)$/i,
};

/** Whether a subject starts with a forward prefix ("Fwd:", "FW:", "WG:", "TR:", …). */
export function subjectSaysForward(subject: string | null): boolean {
  return FORWARD_SUBJECT.test(subject ?? '');
}

/** "Name <a@b>", "Name [mailto:a@b]", "a@b" or a bare name, as forwards write a sender. */
export function parseForwardedSender(value: string): WebhookForwarded['from'] {
  const text = value.trim();
  if (text === '') return null;
  const angle = /^(.*?)\s*[<[](?:mailto:)?([^<>[\]\s]+@[^<>[\]\s]+)[>\]]$/i.exec(text);
  if (angle) return { name: angle[1]!.replace(/^"(.*)"$/, '$1').trim(), address: angle[2]! };
  if (/^[^\s@]+@[^\s@]+$/.test(text)) return { name: '', address: text };
  return { name: text.replace(/^"(.*)"$/, '$1'), address: null };
}

/** The header block under a banner: `From:`, `Subject:` and the date, in the clients' languages. */
function readHeaderBlock(lines: readonly string[], start: number): WebhookForwarded | null {
  const found: { from?: string; subject?: string; date?: string } = {};
  for (let index = start; index < Math.min(lines.length, start + 12); index++) {
    // Gmail's text part marks the names in bold: "*From:* Jane <jane@x>".
    const line = lines[index]!.trim().replace(/^\*([^*:]+):\*/, '$1:');
    if (line === '') {
      if (Object.keys(found).length > 0) break;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) break;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    for (const [field, pattern] of Object.entries(FIELD) as [keyof typeof FIELD, RegExp][]) {
      if (pattern.test(name)) found[field] ??= value;
    }
  }
  if (found.from === undefined) return null;
  return {
    from: parseForwardedSender(found.from),
    subject: found.subject ?? null,
    date: found.date ?? null,
  };
}

/** What is known of a message when deciding whether it forwards another. */
export interface ForwardInput {
  readonly subject: string | null;
  readonly text: string | null;
  /** The header block of an attached message/rfc822 (a forward "as attachment"), already read. */
  readonly attachedMessage?: WebhookForwarded | null;
}

/**
 * `message.forwarded`: the original sender, subject and date of a forward, from the header block a
 * client writes under its forward banner (Gmail, Outlook, Apple Mail, Thunderbird), or from an
 * attached message when the subject says forward. Null when the message is no forward: an Outlook
 * reply has the same header block, so without a forward banner the subject must say "FW:".
 */
export function findForwarded(input: ForwardInput): WebhookForwarded | null {
  const forwardSubject = subjectSaysForward(input.subject);
  if (input.text) {
    const lines = input.text.replace(/\r\n?/g, '\n').split('\n');
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index]!.trim();
      const forward = FORWARD_BANNER.some((pattern) => pattern.test(line));
      const separator = forwardSubject && OUTLOOK_SEPARATOR.some((pattern) => pattern.test(line));
      if (forward || separator) {
        const block = readHeaderBlock(lines, index + 1);
        if (block) return block;
      }
      // Outlook desktop may start the forwarded header block with no separator above it.
      if (forwardSubject && /^\*?(from|von|de|van):/i.test(line)) {
        const block = readHeaderBlock(lines, index);
        if (block?.date) return block;
      }
    }
  }
  return forwardSubject ? (input.attachedMessage ?? null) : null;
}
