import assert from 'node:assert/strict';
import { signWebhook, type WebhookSignatureHeaders } from '../../core/index.ts';

/** The dev secret; any whsec_ secret does. */
export const SECRET = 'whsec_bWFpbGJyaWRnZS1sb2NhbC1kZXYtc2VjcmV0';

let sequence = 0;

/** A version-1 payload, as far as the examples look at it. */
function payload(): string {
  sequence++;
  return JSON.stringify({
    type: 'email.received',
    version: 1,
    id: `01ARZ3NDEKTSV4RRFFQ69G5F${String(sequence).padStart(2, '0')}`,
    message: { subject: `Hello ${sequence}` },
  });
}

function post(url: string, body: string, headers: Partial<WebhookSignatureHeaders>): Promise<Response> {
  return fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

/**
 * What every receiver must do with real signed webhooks over HTTP: accept a valid one; refuse a
 * tampered body, a wrong signature and a replayed (old) timestamp; answer 2xx to a duplicate
 * webhook-id but process it once. `processed` reads how many emails the receiver handled.
 */
export async function checkReceiver(url: string, processed: () => number | Promise<number>): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const body = payload();
  const headers = { ...signWebhook('msg_example_1', now, body, [SECRET]) };

  const valid = await post(url, body, headers);
  assert.equal(valid.status, 204, 'valid webhook');
  assert.equal(await processed(), 1);

  const tampered = await post(url, body.replace('Hello', 'Hullo'), headers);
  assert.equal(tampered.status, 400, 'tampered body');
  const forged = await post(url, body, {
    ...headers,
    'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}`,
  });
  assert.equal(forged.status, 400, 'wrong signature');
  const unsigned = await post(url, body, {});
  assert.equal(unsigned.status, 400, 'no signature headers');

  const oldBody = payload();
  const replayed = await post(url, oldBody, signWebhook('msg_example_2', now - 600, oldBody, [SECRET]));
  assert.equal(replayed.status, 400, 'timestamp 10 minutes old');
  assert.equal(await processed(), 1);

  const duplicate = await post(url, body, signWebhook('msg_example_1', now + 1, body, [SECRET]));
  assert.equal(duplicate.status, 204, 'duplicate webhook-id is acknowledged');
  assert.equal(await processed(), 1, 'duplicate webhook-id is processed once');

  const rotatedBody = payload();
  const rotated = await post(
    url,
    rotatedBody,
    signWebhook('msg_example_3', now, rotatedBody, ['whsec_b3RoZXItc2VjcmV0LW9mLXRoZS10ZXN0', SECRET]),
  );
  assert.equal(rotated.status, 204, 'one valid signature of several, during a key rotation');
  assert.equal(await processed(), 2);
}
