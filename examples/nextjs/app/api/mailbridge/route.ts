// POST /api/mailbridge: the webhook endpoint to put in mailbridge's route config.
import { mailbridgeHandler } from '../../../lib/mailbridge.ts';

const receive = mailbridgeHandler({
  secret: process.env.MAILBRIDGE_SIGNING_SECRET ?? '',
  onEmail: (email, webhookId) => {
    const { message } = email as { message: { subject: string | null } };
    console.log(`email ${webhookId}: ${message.subject}`);
  },
});

export async function POST(request: Request): Promise<Response> {
  return receive(request);
}
