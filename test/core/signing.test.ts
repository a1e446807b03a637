import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { InvalidSigningSecretError, signWebhook } from '../../core/index.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const OTHER_SECRET = `whsec_${Buffer.from('a second key, during rotation').toString('base64')}`;

describe('signWebhook', () => {
  it('matches the Standard Webhooks specification example', () => {
    const headers = signWebhook('msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}', [SECRET]);
    assert.deepEqual(headers, {
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    });
  });

  it('signs id.timestamp.body with the base64-decoded secret', () => {
    const body = Buffer.from('{"subject":"Grüße, 日本"}');
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    const expected = createHmac('sha256', key)
      .update(Buffer.concat([Buffer.from('msg_1.1700000000.'), body]))
      .digest('base64');
    const headers = signWebhook('msg_1', 1700000000, body, [SECRET]);
    assert.equal(headers['webhook-signature'], `v1,${expected}`);
    assert.deepEqual(signWebhook('msg_1', 1700000000, body.toString('utf8'), [SECRET]), headers);
  });

  it('is accepted by the standardwebhooks package', () => {
    const body = JSON.stringify({ type: 'email.received', subject: 'Grüße' });
    const headers = signWebhook('msg_2', Math.floor(Date.now() / 1000), body, [SECRET]);
    assert.deepEqual(new Webhook(SECRET).verify(body, { ...headers }), JSON.parse(body));
  });

  it('signs with every secret during a rotation, so a receiver holding either verifies', () => {
    const body = '{"rotation":true}';
    const headers = signWebhook('msg_3', Math.floor(Date.now() / 1000), body, [SECRET, OTHER_SECRET]);
    assert.equal(headers['webhook-signature'].split(' ').length, 2);
    assert.ok(new Webhook(SECRET).verify(body, { ...headers }));
    assert.ok(new Webhook(OTHER_SECRET).verify(body, { ...headers }));
  });

  it('refuses a secret that is not base64 instead of signing with a wrong key', () => {
    assert.throws(
      () => signWebhook('msg_4', 1, '{}', [SECRET, 'whsec_not base64!']),
      InvalidSigningSecretError,
    );
    assert.throws(() => signWebhook('msg_4', 1, '{}', ['whsec_']), InvalidSigningSecretError);
    assert.throws(() => signWebhook('msg_4', 1, '{}', []), /no signing secret/);
  });
});
