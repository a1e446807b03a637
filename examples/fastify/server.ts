// A mailbridge webhook receiver with Fastify: verify the signature, then dedupe on webhook-id.
// Run: MAILBRIDGE_SIGNING_SECRET=whsec_… PORT=3000 npx node examples/fastify/server.ts (docs/receivers.md)
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { Webhook } from 'standardwebhooks';

export interface ReceiverOptions {
  /** The route's signing secret, `whsec_…`. */
  readonly secret: string;
  /** Your handling of one email (payload version 1, see schema/webhook-payload.v1.json). */
  readonly onEmail: (email: unknown, webhookId: string) => void | Promise<void>;
}

export function createApp({ secret, onEmail }: ReceiverOptions): FastifyInstance {
  const webhook = new Webhook(secret);
  // Production: a table with a unique key on webhook_id, written in the same transaction as the work.
  const processed = new Set<string>();
  const app = Fastify({ bodyLimit: 50 * 1024 * 1024 });
  // The signature covers the exact bytes sent: keep the body as a string instead of parsed JSON.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) =>
    done(null, body),
  );

  app.post('/webhooks/mailbridge', async (request, reply) => {
    const header = (name: string) => String(request.headers[name] ?? '');
    let email: unknown;
    try {
      // Checks webhook-signature over id.timestamp.body and refuses timestamps older than 5 minutes.
      email = webhook.verify(request.body as string, {
        'webhook-id': header('webhook-id'),
        'webhook-timestamp': header('webhook-timestamp'),
        'webhook-signature': header('webhook-signature'),
      });
    } catch {
      return reply.code(400).send('invalid signature');
    }
    const webhookId = header('webhook-id');
    // Delivery is at least once: the same webhook-id may come again, answer 2xx without redoing the work.
    if (!processed.has(webhookId)) {
      await onEmail(email, webhookId);
      processed.add(webhookId);
    }
    return reply.code(204).send();
  });
  return app;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const app = createApp({
    secret: process.env.MAILBRIDGE_SIGNING_SECRET ?? '',
    onEmail: (email, webhookId) => {
      const { message } = email as { message: { subject: string | null } };
      console.log(`email ${webhookId}: ${message.subject}`);
    },
  });
  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
  console.log(`listening on ${address}/webhooks/mailbridge`);
}
