import type { WebhookMessage, WebhookPayload } from '../core/index.ts';

const ZERO_SHA256 = '0'.repeat(64);

/**
 * A payload the schema accepts, as parse stores it for message `id`, with `message` and `raw`
 * fields replaced by the caller's.
 */
export function webhookPayload(
  id: string,
  overrides: { message?: Partial<WebhookMessage>; raw?: Partial<WebhookPayload['raw']> } = {},
): WebhookPayload {
  return {
    type: 'email.received',
    version: 1,
    id,
    receivedAt: '2026-11-20T10:00:00.000Z',
    route: { id: 'support', recipients: ['help@example.test'] },
    envelope: {
      mailFrom: 'sender@example.org',
      rcptTo: ['help@example.test'],
      helo: 'mail.example.org',
      remoteAddress: '192.0.2.1',
      tls: null,
    },
    message: {
      messageId: '<m1@example.org>',
      inReplyTo: null,
      references: [],
      date: '2026-11-20T09:59:00.000Z',
      subject: 'Grüße',
      from: [{ name: 'Sender', address: 'sender@example.org' }],
      replyTo: [],
      to: [{ name: '', address: 'help@example.test' }],
      cc: [],
      headers: [],
      text: 'hi',
      html: null,
      truncated: {},
      strippedText: 'hi',
      mailboxHash: null,
      attachments: [],
      ...overrides.message,
    },
    auth: {
      spf: { result: 'none', domain: 'example.org' },
      dkim: [],
      dmarc: { result: 'none', policy: null, domain: 'example.org' },
      arc: { result: 'none' },
    },
    raw: { size: 20, sha256: ZERO_SHA256, url: `s3://bucket/raw/${id}.eml`, ...overrides.raw },
    warnings: [],
  };
}
