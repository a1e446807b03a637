// A mailbridge webhook receiver with Express: verify the signature, then dedupe on webhook-id.
// Run: MAILBRIDGE_SIGNING_SECRET=whsec_… PORT=3000 npx node examples/express/server.ts (docs/receivers.md)
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';
import { Webhook } from 'standardwebhooks';

export interface ReceiverOptions {
  /** The route's signing secret, `whsec_…`. */
  readonly secret: string;
  /** Your handling of one email (payload version 1, see schema/webhook-payload.v1.json). */
  readonly onEmail: (email: unknown, webhookId: string) => void | Promise<void>;
}

export function createApp({ secret, onEmail }: ReceiverOptions): Express {
  const webhook = new Webhook(secret);
  // Production: a table with a unique key on webhook_id, written in the same transaction as the work.
  const processed = new Set<string>();
  const app = express();
  // The signature covers the exact bytes sent: take the raw body, never re-serialized JSON.
  app.post(
    '/webhooks/mailbridge',
    express.raw({ type: 'application/json', limit: '50mb' }),
    async (req, res) => {
      let email: unknown;
      try {
        // Checks webhook-signature over id.timestamp.body and refuses timestamps older than 5 minutes.
        email = webhook.verify(req.body as Buffer, {
          'webhook-id': req.header('webhook-id') ?? '',
          'webhook-timestamp': req.header('webhook-timestamp') ?? '',
          'webhook-signature': req.header('webhook-signature') ?? '',
        });
      } catch {
        res.status(400).send('invalid signature');
        return;
      }
      const webhookId = req.header('webhook-id')!;
      // Delivery is at least once: the same webhook-id may come again, answer 2xx without redoing the work.
      if (!processed.has(webhookId)) {
        await onEmail(email, webhookId);
        processed.add(webhookId);
      }
      res.status(204).end();
    },
  );
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
  const port = Number(process.env.PORT ?? 3000);
  // Express 5 hands a listen error (EADDRINUSE: the port is taken) to this callback.
  const server = app.listen(port, '127.0.0.1', (error?: Error) => {
    if (error) {
      console.error(`cannot listen on 127.0.0.1:${port}: ${error.message}`);
      process.exit(1);
    }
    const { port: bound } = server.address() as AddressInfo;
    console.log(`listening on http://127.0.0.1:${bound}/webhooks/mailbridge`);
  });
}
