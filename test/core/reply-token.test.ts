import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import {
  createReplyAddress,
  createReplyToken,
  MAX_REPLY_REFERENCE_BYTES,
  parseAddress,
  verifyReplyToken,
} from '../../core/index.ts';

const SECRET = 'reply-token-secret-for-tests-0123456789';
const NOW = new Date('2026-01-15T10:00:00Z');
const IN_30_DAYS = new Date('2026-02-14T10:00:00Z');
const PYTHON_HELPER = join(import.meta.dirname, '..', '..', 'examples', 'python', 'reply_token.py');

describe('reply tokens', () => {
  it('makes a reply+token address that fits a local part and survives lowercasing', () => {
    const address = createReplyAddress(SECRET, {
      reference: 'x'.repeat(MAX_REPLY_REFERENCE_BYTES),
      tenant: 'acme',
      expiresAt: IN_30_DAYS,
      domain: 'reply.app.test',
    });
    const local = address.slice(0, address.indexOf('@'));
    assert.equal(local.length, 64, 'RFC 5321 §4.5.3.1.1: at most 64 octets');
    assert.match(local, /^reply\+[a-z2-7]+$/);
    // As the webhook gives it: parseAddress lowercases, and some MTAs uppercase.
    const hash = parseAddress(address.toUpperCase())!.mailboxHash;
    assert.deepEqual(verifyReplyToken(hash, SECRET, { tenant: 'acme', now: NOW }), {
      ok: true,
      reference: 'x'.repeat(MAX_REPLY_REFERENCE_BYTES),
      tenant: 'acme',
      expiresAt: IN_30_DAYS,
    });
  });

  it('refuses another tenant, a changed character, an unknown secret and an expired token', () => {
    const token = createReplyToken(SECRET, { reference: 'T-1234', tenant: 'acme', expiresAt: IN_30_DAYS });
    const verify = (hash: string, tenant = 'acme', now = NOW, secrets: string | string[] = SECRET) =>
      verifyReplyToken(hash, secrets, { tenant, now });
    assert.deepEqual(verify(token, 'globex'), { ok: false, reason: 'bad_signature' });
    const flipped = token.slice(0, 20) + (token[20] === 'a' ? 'b' : 'a') + token.slice(21);
    assert.deepEqual(verify(flipped), { ok: false, reason: 'bad_signature' });
    assert.deepEqual(verify(token, 'acme', NOW, 'another-secret-of-enough-length'), {
      ok: false,
      reason: 'bad_signature',
    });
    assert.equal(
      verify(token, 'acme', NOW, ['another-secret-of-enough-length', SECRET]).ok,
      true,
      'rotation',
    );
    assert.deepEqual(verify(token, 'acme', new Date(IN_30_DAYS.getTime() + 1000)), {
      ok: false,
      reason: 'expired',
    });
    for (const bad of ['', 'abc', 'not base32!', token.slice(0, 20)])
      assert.deepEqual(verify(bad), { ok: false, reason: 'malformed' }, bad);
    assert.deepEqual(verifyReplyToken(null, SECRET, { tenant: 'acme' }), { ok: false, reason: 'malformed' });
  });

  it('finds the tenant from the reference when the app keeps that mapping', () => {
    const token = createReplyToken(SECRET, { reference: 'T-77', tenant: 'globex', expiresAt: IN_30_DAYS });
    const tenants = new Map([['T-77', 'globex']]);
    const result = verifyReplyToken(token, SECRET, {
      tenant: (reference) => tenants.get(reference),
      now: NOW,
    });
    assert.equal(result.ok && result.tenant, 'globex');
    const unknown = createReplyToken(SECRET, { reference: 'T-78', tenant: 'globex', expiresAt: IN_30_DAYS });
    assert.deepEqual(verifyReplyToken(unknown, SECRET, { tenant: (r) => tenants.get(r), now: NOW }), {
      ok: false,
      reason: 'bad_signature',
    });
  });

  it('refuses a short secret and a reference that would not fit', () => {
    assert.throws(
      () => createReplyToken('short', { reference: 'a', tenant: 't', expiresAt: IN_30_DAYS }),
      /16 bytes/,
    );
    assert.throws(
      () => createReplyToken(SECRET, { reference: 'é'.repeat(11), tenant: 't', expiresAt: IN_30_DAYS }),
      /1 to 21 UTF-8 bytes/,
    );
  });

  it('agrees with the Python example, both ways', async () => {
    const python = spawn('python3', [PYTHON_HELPER], { stdio: ['pipe', 'pipe', 'inherit'] });
    const answers = createInterface({ input: python.stdout! })[Symbol.asyncIterator]();
    const ask = async (request: object) => {
      python.stdin!.write(`${JSON.stringify(request)}\n`);
      const { value, done } = await answers.next();
      assert.ok(!done, 'python3 examples/python/reply_token.py answered nothing (is python3 installed?)');
      return JSON.parse(value as string);
    };
    try {
      const cases = [
        { reference: 'T-1234', tenant: 'acme' },
        { reference: 'x'.repeat(21), tenant: 'tenant with spaces' },
        { reference: 'Ünïcode→', tenant: 'ßeta' },
        { reference: '7f3c2a91-b0e4', tenant: '' },
      ];
      for (const { reference, tenant } of cases) {
        const ours = createReplyToken(SECRET, { reference, tenant, expiresAt: IN_30_DAYS });
        const theirs = await ask({
          op: 'create',
          secret: SECRET,
          reference,
          tenant,
          expiresAt: IN_30_DAYS.getTime() / 1000,
        });
        assert.equal(theirs.token, ours, `${reference}: same token from both`);
        assert.deepEqual(
          await ask({
            op: 'verify',
            token: ours.toUpperCase(),
            secrets: [SECRET],
            tenant,
            now: NOW.getTime() / 1000,
          }),
          { ok: true, reference, tenant, expiresAt: IN_30_DAYS.getTime() / 1000 },
        );
        const verdict = verifyReplyToken(theirs.token, SECRET, { tenant, now: NOW });
        assert.equal(verdict.ok && verdict.reference, reference);
      }
      const token = createReplyToken(SECRET, { reference: 'T-1', tenant: 'acme', expiresAt: IN_30_DAYS });
      assert.deepEqual(
        await ask({ op: 'verify', token, secrets: [SECRET], tenant: 'globex', now: NOW.getTime() / 1000 }),
        {
          ok: false,
          reason: 'bad_signature',
        },
      );
      const later = IN_30_DAYS.getTime() / 1000 + 1;
      assert.deepEqual(await ask({ op: 'verify', token, secrets: [SECRET], tenant: 'acme', now: later }), {
        ok: false,
        reason: 'expired',
      });
    } finally {
      python.stdin!.end();
      await new Promise((resolve) => python.once('exit', resolve));
    }
  });
});
