import { describeTimelineEvent, type MessageDetail } from '../../core/control/index.ts';
import type { DeliveryOutcome } from './ports.ts';
import type { StoredEntry } from './store.ts';

// Email content is hostile input: everything shown is escaped for element text and quoted attributes.
export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!,
  );
}

function field(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

function addresses(value: unknown): string {
  return list(value)
    .map((item) => {
      const name = text(field(item, 'name'));
      const address = text(field(item, 'address'));
      return name ? `${name} <${address}>` : address;
    })
    .join(', ');
}

/** An attachment of a payload, as the page lists it. */
export interface AttachmentView {
  readonly index: number;
  readonly filename: string;
  readonly contentType: string;
  readonly size: string;
  readonly containedIn: number | undefined;
  readonly contentId: string | null;
}

/** What the page shows of one webhook, read defensively from its (untrusted) payload. */
export interface MessageView {
  readonly isJson: boolean;
  readonly id: string;
  readonly receivedAt: string;
  readonly subject: string;
  readonly from: string;
  readonly to: string;
  readonly route: string;
  readonly webhookId: string;
  readonly strippedText: string;
  readonly text: string;
  readonly html: string | null;
  readonly signature: string;
  readonly messageId: string;
  readonly inReplyTo: string;
  readonly references: string[];
  readonly mailboxHashes: string[];
  readonly flags: string[];
  /** A delivery report's recipient, action, status and diagnostic, on one line. */
  readonly bounce: string;
  /** A forward's original sender and subject, on one line. */
  readonly forwarded: string;
  readonly auth: { readonly summary: string; readonly temperror: boolean };
  readonly warnings: string[];
  readonly attachments: AttachmentView[];
  readonly headers: { readonly name: string; readonly value: string }[];
}

export function viewOf(stored: StoredEntry): MessageView {
  const payload = stored.payload;
  const message = field(payload, 'message');
  const route = field(payload, 'route');
  const details = list(field(route, 'recipientDetails'));
  const hashes = details.length
    ? details.map(
        (detail) => `${text(field(detail, 'address'))}: ${text(field(detail, 'mailboxHash')) || '—'}`,
      )
    : [text(field(message, 'mailboxHash'))].filter(Boolean);
  const flags = field(message, 'flags');
  const dkim = list(field(payload, 'auth', 'dkim'));
  const verdicts = [
    `spf=${text(field(payload, 'auth', 'spf', 'result')) || '?'}`,
    `dkim=${dkim.map((row) => `${text(field(row, 'result'))} (${text(field(row, 'domain'))})`).join(', ') || 'none'}`,
    `dmarc=${text(field(payload, 'auth', 'dmarc', 'result')) || '?'}`,
    `arc=${text(field(payload, 'auth', 'arc', 'result')) || '?'}`,
  ];
  const html = field(message, 'html');
  return {
    isJson: payload !== undefined,
    id: text(field(payload, 'id')),
    receivedAt: stored.entry.receivedAt,
    subject: payload === undefined ? '(not JSON)' : text(field(message, 'subject')) || '(no subject)',
    from: addresses(field(message, 'from')),
    to: addresses(field(message, 'to')) || list(field(route, 'recipients')).map(text).join(', '),
    route: text(field(route, 'id')),
    webhookId: text(stored.entry.headers['webhook-id']),
    strippedText: text(field(message, 'strippedText')),
    text: text(field(message, 'text')),
    html: typeof html === 'string' ? html : null,
    signature: text(field(message, 'signature')),
    messageId: text(field(message, 'messageId')),
    inReplyTo: text(field(message, 'inReplyTo')),
    references: list(field(message, 'references')).map(text),
    mailboxHashes: hashes,
    flags: ['autoReply', 'bulk', 'bounce'].filter((flag) => field(flags, flag) === true),
    bounce: ['finalRecipient', 'action', 'status', 'diagnosticCode']
      .map((key) => text(field(message, 'bounce', key)))
      .filter(Boolean)
      .join(' · '),
    forwarded: [
      addresses([field(message, 'forwarded', 'from')].filter(Boolean)),
      text(field(message, 'forwarded', 'subject')),
    ]
      .filter(Boolean)
      .join(' · '),
    auth: {
      summary: verdicts.join(' · '),
      temperror: verdicts.some((verdict) => verdict.includes('temperror')),
    },
    warnings: list(field(payload, 'warnings')).map(text),
    attachments: list(field(message, 'attachments')).map((attachment, index) => ({
      index,
      filename: text(field(attachment, 'filename')) || '(unnamed)',
      contentType: text(field(attachment, 'contentType')),
      size: text(field(attachment, 'size')),
      contentId: text(field(attachment, 'contentId')) || null,
      containedIn:
        typeof field(attachment, 'containedIn') === 'number'
          ? (field(attachment, 'containedIn') as number)
          : undefined,
    })),
    headers: list(field(message, 'headers')).map((header) => ({
      name: text(field(header, 'name')),
      value: text(field(header, 'value')),
    })),
  };
}

const FLAG_LABELS: Record<string, string> = { autoReply: 'auto-reply', bulk: 'bulk', bounce: 'bounce' };
const TEMPERROR_NOTE =
  "temperror: the DNS lookups got no answer (offline). Put the sender's domain in the dev DNS zone (dev.dnsZone in the config) to get pass or fail locally.";

function row(label: string, value: string, className = ''): string {
  return value
    ? `<dt>${label}</dt><dd${className ? ` class="${className}"` : ''}>${escapeHtml(value)}</dd>`
    : '';
}

function attachmentLinks(seq: number, view: MessageView): string {
  if (view.attachments.length === 0) return '';
  const items = view.attachments.map(
    (attachment) =>
      `<li><a class="attachment" href="/messages/${seq}/attachments/${attachment.index}" download>${escapeHtml(attachment.filename)}</a> <span class="muted">${escapeHtml(attachment.contentType)}, ${escapeHtml(attachment.size)} bytes${attachment.containedIn === undefined ? '' : `, from #${attachment.containedIn + 1}`}</span></li>`,
  );
  return `<dt>Attachments</dt><dd><ul class="attachments">${items.join('')}</ul></dd>`;
}

/** The fields of a message, shared by its card and its page. */
function facts(stored: StoredEntry, view: MessageView): string {
  const references = view.references.length ? `${view.references.length}: ${view.references.join(' ')}` : '';
  const signature = stored.entry.signatureValid
    ? '<span class="ok">valid</span>'
    : '<span class="bad">INVALID</span>';
  return `<dl>${row('From', view.from)}${row('To', view.to)}${row('Route', view.route)}${row('Mailbox hash', view.mailboxHashes.join('; '))}${row('Message-ID', view.messageId)}${row('In-Reply-To', view.inReplyTo)}${row('References', references)}${row('Bounce', view.bounce)}${row('Forwarded', view.forwarded)}${row('Stripped text', view.strippedText, 'stripped')}${row('Signature block', view.signature, 'stripped')}
<dt>Auth</dt><dd>${escapeHtml(view.auth.summary)}${view.auth.temperror ? `<br><span class="note">${escapeHtml(TEMPERROR_NOTE)}</span>` : ''}</dd>
<dt>Webhook</dt><dd>${escapeHtml(view.webhookId)} · signature ${signature}</dd>${view.warnings.length ? `<dt>Warnings</dt><dd><ul class="warnings">${view.warnings.map((warning) => `<li>${escapeHtml(warning)}</li>`).join('')}</ul></dd>` : ''}${attachmentLinks(stored.seq, view)}</dl>`;
}

const badges = (view: MessageView) =>
  view.flags.map((flag) => `<span class="badge ${flag}">${FLAG_LABELS[flag]}</span>`).join(' ');

/** One received webhook on the list. */
export function renderCard(stored: StoredEntry): string {
  const view = viewOf(stored);
  return `<article class="card" id="m${stored.seq}" data-seq="${stored.seq}">
<header><a class="subject" href="/messages/${stored.seq}">${escapeHtml(view.subject)}</a> ${badges(view)}<time>${escapeHtml(view.receivedAt)}</time></header>
${facts(stored, view)}
</article>`;
}

/** A delivery to another endpoint that failed (the inbox's `seq`th), on the list beside the webhooks. */
export function renderFailure(seq: number, outcome: DeliveryOutcome): string {
  const title =
    outcome.outcome === 'failed' ? 'Delivery failed (dead-lettered)' : 'Delivery failed, will retry';
  return `<article class="card failure" id="f${seq}" data-failure="${seq}">
<header><span class="subject">${title}: route ${escapeHtml(outcome.routeId)}</span><time>${escapeHtml(outcome.at)}</time></header>
<dl>${row('Endpoint', outcome.endpoint)}${row('Message', outcome.messageId)}${row('Try', String(outcome.attempt))}${row('Status', outcome.status === null ? 'no response' : String(outcome.status))}${row('Error', outcome.error ?? '')}</dl>
</article>`;
}

const HEAD = (title: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/inbox.css"></head>`;

/** What the list page was rendered from: the page script catches up from these numbers. */
export interface PageState {
  /** Webhooks received so far (the last entry number). */
  readonly received: number;
  readonly kept: number;
  /** Failed deliveries shown so far (the last failure number). */
  readonly failures: number;
  /** Which start of the inbox rendered the page. */
  readonly started: string;
}

/** The list page: the cards newest first, live through the page script. */
export function renderPage(cards: readonly { at: string; html: string }[], state: PageState): string {
  const { received, kept } = state;
  const items = [...cards].sort((a, b) => b.at.localeCompare(a.at)).map((card) => card.html);
  return `${HEAD('mailbridge dev inbox')}
<body><header class="bar"><h1>mailbridge dev inbox</h1>
<input id="search" type="search" placeholder="Search subject, address, text, attachment, hash…" aria-label="Search">
<button id="clear" type="button">Clear</button><span id="live" class="muted">connecting…</span></header>
<p id="count">${received} webhook(s) received, ${kept} kept, newest first · <a href="/api/webhooks">/api/webhooks</a></p>
<main id="list" data-received="${received}" data-failures="${state.failures}" data-started="${escapeHtml(state.started)}">
${items.join('\n') || '<p id="empty">Nothing yet. Send a mail to anything@example.test on 127.0.0.1:2525.</p>'}
</main>
<script src="/assets/inbox.js"></script></body></html>`;
}

/** What the message log says of a message, for its page: its detail, or why there is none. */
export type LogView =
  | { readonly state: 'found'; readonly message: MessageDetail }
  | { readonly state: 'off' | 'unavailable'; readonly reason: string };

/** The message log's timeline of a message: every delivery, retry and failure, to every endpoint. */
function renderTimeline(log: LogView): string {
  if (log.state !== 'found') return `<p class="muted">${escapeHtml(log.reason)}</p>`;
  const rows = log.message.timeline.map(
    (event) =>
      `<tr class="${event.type}"><td><time>${escapeHtml(event.at)}</time></td><th>${escapeHtml(event.type.replace('_', ' '))}</th><td>${escapeHtml(describeTimelineEvent(event))}</td></tr>`,
  );
  return `<p>Status: <strong class="status">${escapeHtml(log.message.status.replace('_', ' '))}</strong></p><table class="timeline">${rows.join('')}</table>`;
}

/** One message: its fields, timeline, text, HTML (sandboxed), attachments, raw source, headers and JSON. */
export function renderMessagePage(stored: StoredEntry, log: LogView): string {
  const view = viewOf(stored);
  const base = `/messages/${stored.seq}`;
  let body: unknown = stored.entry.body;
  if (view.isJson) body = stored.payload;
  const json = JSON.stringify({ ...stored.entry, body }, null, 2);
  return `${HEAD(`${view.subject} · mailbridge dev inbox`)}
<body><nav class="bar"><a href="/">← inbox</a> · <a href="#timeline">Timeline</a> · <a href="#text">Text</a> · <a href="#html">HTML</a> · <a href="#headers">Headers</a> · <a href="#json">JSON</a> · <a href="${base}/raw">Raw</a> (<a href="${base}/raw.eml" download>.eml</a>)</nav>
<article class="card" data-seq="${stored.seq}"><header><h1 class="subject">${escapeHtml(view.subject)}</h1> ${badges(view)}<time>${escapeHtml(view.receivedAt)}</time></header>
${facts(stored, view)}</article>
<section id="timeline"><h2>Timeline</h2>${renderTimeline(log)}</section>
<section id="text"><h2>Text</h2><pre>${escapeHtml(view.text) || '<span class="muted">(none)</span>'}</pre></section>
<section id="html"><h2>HTML</h2>${view.html === null ? '<p class="muted">(none)</p>' : `<p class="muted">Shown sandboxed: no scripts, forms or remote content.</p><iframe sandbox="" referrerpolicy="no-referrer" src="${base}/html" title="message HTML"></iframe>`}</section>
<section id="headers"><h2>Headers</h2><table>${view.headers.map((header) => `<tr><th>${escapeHtml(header.name)}</th><td>${escapeHtml(header.value)}</td></tr>`).join('')}</table></section>
<section id="json"><h2>Full JSON</h2><pre>${escapeHtml(json)}</pre></section>
</body></html>`;
}
