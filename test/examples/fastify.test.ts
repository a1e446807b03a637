import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createApp } from '../../examples/fastify/server.ts';
import { checkReceiver, SECRET } from './helpers.ts';

describe('examples/fastify receiver', () => {
  let app: FastifyInstance;
  let url: string;
  let processed = 0;
  before(async () => {
    app = createApp({ secret: SECRET, onEmail: () => void processed++ });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(() => app.close());

  it('verifies signatures and processes each webhook-id once', async () => {
    await checkReceiver(`${url}/webhooks/mailbridge`, () => processed);
  });
});
