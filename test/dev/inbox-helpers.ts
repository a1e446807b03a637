import assert from 'node:assert/strict';
import { Webhook } from 'standardwebhooks';
import type { Inbox } from '../../dev/index.ts';

/** The signing secret the inbox tests start their inbox with. */
export const INBOX_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** POSTs a body to the inbox as the deliver function does: signed per Standard Webhooks. */
export async function postSigned(inbox: Inbox, body: string): Promise<void> {
  const id = `msg_${Math.random().toString(36).slice(2)}`;
  const now = new Date();
  const response = await fetch(`${inbox.url}/webhooks`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': new Webhook(INBOX_SECRET).sign(id, now, body),
    },
  });
  assert.equal(response.status, 204);
}
