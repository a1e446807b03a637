// Verifies and dedupes mailbridge webhooks in a Next.js route handler (app router).
import { Webhook } from 'standardwebhooks';

export interface ReceiverOptions {
  /** The route's signing secret, `whsec_…`. */
  readonly secret: string;
  /** Your handling of one email (payload version 1, see schema/webhook-payload.v1.json). */
  readonly onEmail: (email: unknown, webhookId: string) => void | Promise<void>;
}

/** A `POST` route handler that verifies the signature, then handles each webhook-id once. */
export function mailbridgeHandler({
  secret,
  onEmail,
}: ReceiverOptions): (request: Request) => Promise<Response> {
  const webhook = new Webhook(secret);
  // Production: a table with a unique key on webhook_id (serverless instances share no memory).
  const processed = new Set<string>();
  return async (request) => {
    // The signature covers the exact bytes sent: read the text, never request.json().
    const body = await request.text();
    const webhookId = request.headers.get('webhook-id') ?? '';
    let email: unknown;
    try {
      // Checks webhook-signature over id.timestamp.body and refuses timestamps older than 5 minutes.
      email = webhook.verify(body, {
        'webhook-id': webhookId,
        'webhook-timestamp': request.headers.get('webhook-timestamp') ?? '',
        'webhook-signature': request.headers.get('webhook-signature') ?? '',
      });
    } catch {
      return new Response('invalid signature', { status: 400 });
    }
    // Delivery is at least once: the same webhook-id may come again, answer 2xx without redoing the work.
    if (!processed.has(webhookId)) {
      await onEmail(email, webhookId);
      processed.add(webhookId);
    }
    return new Response(null, { status: 204 });
  };
}
