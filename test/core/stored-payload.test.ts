import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  capBodies,
  capJsonString,
  conformPayload,
  fillLinks,
  fitPayload,
  jsonByteLength,
  jsonChunks,
  linkPlaceholder,
  storedPayloadProblem,
  type WebhookPayload,
  WebhookPayloadSchema,
} from '../../core/index.ts';

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

/** A small valid payload to vary. */
function payload(message: Partial<WebhookPayload['message']> = {}): WebhookPayload {
  return WebhookPayloadSchema.parse({
    type: 'email.received',
    version: 1,
    id: '01JSTOREDPAYLOAD0000000001',
    receivedAt: '2026-11-20T10:00:00.000Z',
    route: { id: 'support', recipients: ['help@example.test'] },
    envelope: {
      mailFrom: 'a@sender.test',
      rcptTo: ['help@example.test'],
      helo: 'mx.sender.test',
      remoteAddress: '192.0.2.1',
      tls: null,
    },
    message: {
      messageId: '<m@sender.test>',
      inReplyTo: null,
      references: [],
      date: null,
      subject: 'hi',
      from: [{ name: 'A', address: 'a@sender.test' }],
      replyTo: [],
      to: [],
      cc: [],
      headers: [{ name: 'Subject', value: 'hi' }],
      text: 'hello',
      html: null,
      truncated: {},
      strippedText: 'hello',
      mailboxHash: null,
      attachments: [],
      ...message,
    },
    auth: {
      spf: { result: 'none', domain: null },
      dkim: [],
      dmarc: { result: 'none', policy: null, domain: null },
      arc: { result: 'none' },
    },
    raw: {
      size: 10,
      sha256: 'a'.repeat(64),
      url: 's3://bucket/raw/2026/11/20/01JSTOREDPAYLOAD0000000001.eml',
    },
    warnings: [],
  });
}

const attachment = (filename: string, extra: { content: string } | { url: string }) => ({
  filename,
  contentType: 'application/octet-stream',
  size: 1,
  sha256: 'b'.repeat(64),
  disposition: 'attachment',
  contentId: null,
  ...extra,
});

describe('capJsonString', () => {
  it('cuts to the most characters whose JSON fits, never inside an escape or a surrogate pair', () => {
    const samples = [
      'plain ascii text '.repeat(20),
      '\u0001\u0002\u001f'.repeat(50),
      '"quoted" \\ back\nslash\t'.repeat(20),
      'é日本語'.repeat(40),
      '😀👍'.repeat(40),
      `lone \ud800 surrogate \udfff`.repeat(10),
    ];
    for (const sample of samples) {
      for (const max of [2, 3, 7, 50, 101, 333]) {
        const { value, truncated } = capJsonString(sample, max);
        assert.ok(sample.startsWith(value), 'a prefix');
        assert.ok(jsonBytes(value) <= max, `${jsonBytes(value)} > ${max}`);
        assert.equal(truncated, value !== sample);
        // Maximal: one more character (a whole pair) would not fit.
        if (truncated) {
          const next = sample.codePointAt(value.length)! > 0xffff ? 2 : 1;
          assert.ok(jsonBytes(sample.slice(0, value.length + next)) > max);
        }
        assert.ok(!/[\ud800-\udbff]$/.test(value) || !/^[\udc00-\udfff]/.test(sample.slice(value.length)));
      }
    }
  });

  it('leaves a string that fits as it is', () => {
    assert.deepEqual(capJsonString('x'.repeat(98), 100), { value: 'x'.repeat(98), truncated: false });
    assert.deepEqual(capJsonString('\u0001', 8), { value: '\u0001', truncated: false });
    assert.deepEqual(capJsonString('\u0001', 7), { value: '', truncated: true });
  });
});

describe('capBodies', () => {
  it('caps text and html to their bytes and says which were cut', () => {
    const bodies = capBodies(
      { text: '\u0001'.repeat(1000), html: '<p>short</p>' },
      { textBytes: 602, htmlBytes: 100 },
    );
    assert.equal(bodies.text, '\u0001'.repeat(100));
    assert.equal(bodies.html, '<p>short</p>');
    assert.deepEqual(bodies.truncated, { text: true });
    assert.deepEqual(capBodies({ text: null, html: null }).truncated, {});
  });
});

describe('jsonChunks and jsonByteLength', () => {
  it('give JSON.stringify’s text and byte count, in pieces', () => {
    const value = {
      ...payload({
        text: 'ünïcödé \u0001 "q" 😀'.repeat(10_000),
        headers: Array.from({ length: 1000 }, (_, i) => ({ name: `X-${i}`, value: `välue ${i}` })),
      }),
      skipped: undefined,
      list: [1, undefined, null, 'x'],
    };
    const chunks = [...jsonChunks(value, 1024)];
    assert.ok(chunks.length > 10);
    assert.equal(chunks.join(''), JSON.stringify(value));
    assert.equal(jsonByteLength(value), jsonBytes(value));
  });
});

describe('fitPayload', () => {
  const linkOf = (index: number) => `s3://bucket/attachments/01JSTOREDPAYLOAD0000000001/${index}-file`;

  it('leaves a payload under the cap alone', () => {
    const small = payload();
    assert.equal(fitPayload(small, linkOf, 1_000_000), small);
  });

  it('sends the largest inline attachments as links until the payload fits', () => {
    const big = payload({
      attachments: [
        attachment('small', { content: 'A'.repeat(1000) }),
        attachment('large', { content: 'B'.repeat(60_000) }),
        attachment('medium', { content: 'C'.repeat(30_000) }),
      ],
    });
    const fitted = fitPayload(big, linkOf, 40_000);
    assert.ok(jsonBytes(fitted) <= 40_000);
    assert.deepEqual(
      fitted.message.attachments.map((file) => ('url' in file ? file.url : 'inline')),
      ['inline', linkOf(1), 'inline'],
    );
    assert.deepEqual(fitted.warnings, [
      'payload_capped: 1 inline attachment(s) sent as links to fit 40000 bytes',
    ]);
    assert.ok(WebhookPayloadSchema.safeParse(fitted).success);
  });

  it('leaves the headers out and cuts lists and values when linking is not enough', () => {
    const huge = payload({
      headers: Array.from({ length: 5000 }, (_, i) => ({ name: `X-${i}`, value: 'v'.repeat(100) })),
      to: Array.from({ length: 3000 }, (_, i) => ({ name: 'n'.repeat(1000), address: `u${i}@example.test` })),
      subject: 's'.repeat(100_000),
      text: 'kept',
    });
    const fitted = fitPayload(huge, linkOf, 2_000_000);
    assert.ok(jsonBytes(fitted) <= 2_000_000, `${jsonBytes(fitted)}`);
    assert.deepEqual(fitted.message.headers, []);
    assert.equal(fitted.message.to.length, 100);
    assert.equal(fitted.message.subject!.length, 1000);
    assert.equal(fitted.message.text, 'kept');
    assert.match(
      fitted.warnings.at(-1)!,
      /^payload_capped: \d+ bytes of JSON with every attachment linked; headers left out/,
    );
    assert.ok(WebhookPayloadSchema.safeParse(fitted).success);
  });
});

describe('conformPayload', () => {
  it('empties the message values the schema refuses, with a warning each, and keeps the rest', () => {
    const bad = payload();
    const candidate = {
      ...bad,
      message: {
        ...bad.message,
        date: '+010000-01-01T00:00:00.000Z',
        subject: 42,
        attachments: [attachment('ok', { url: 's3://b/k' }), { filename: 'broken' }],
      },
    } as unknown as WebhookPayload;
    const conformed = conformPayload(candidate);
    assert.equal(conformed.message.date, null);
    assert.equal(conformed.message.subject, null);
    assert.deepEqual(
      conformed.message.attachments.map((file) => file.filename),
      ['ok'],
    );
    assert.equal(conformed.message.text, 'hello');
    assert.equal(conformed.warnings.length, 3);
    assert.ok(conformed.warnings.every((warning) => warning.startsWith('invalid_value: message.')));
  });

  it('throws on values that are not the sender’s', () => {
    const bad = { ...payload(), raw: { size: -1, sha256: 'x', url: '' } } as WebhookPayload;
    assert.throws(() => conformPayload(bad), /payload invalid at raw\./);
  });
});

describe('fillLinks', () => {
  const ref = (key: string) => ({ bucket: 'bucket', key });
  const sign = async ({ bucket, key }: { bucket: string; key: string }) =>
    `https://${bucket}.s3.example/${key}?X-Amz-Signature=abc&t=1`;

  it('signs each placeholder it accepts, once per object, and leaves every other byte as stored', async () => {
    const stored = {
      message: {
        subject: 'a subject with "url":"s3://bucket/raw/evil.eml" in it',
        attachments: [
          { url: linkPlaceholder(ref('attachments/M/0-a')) },
          { url: linkPlaceholder(ref('attachments/OTHER/0-b')) },
          { url: linkPlaceholder(ref('attachments/M/0-a')) },
          { content: 'AAAA' },
        ],
      },
      raw: { url: linkPlaceholder(ref('raw/2026/11/20/M.eml')) },
    };
    const signed: string[] = [];
    const body = await fillLinks(
      Buffer.from(JSON.stringify(stored)),
      async (object) => {
        signed.push(object.key);
        return sign(object);
      },
      (object) => object.key.includes('/M'),
    );
    const sent = JSON.parse(body.toString('utf8')) as typeof stored;
    assert.deepEqual(signed.sort(), ['attachments/M/0-a', 'raw/2026/11/20/M.eml']);
    assert.equal(sent.message.subject, stored.message.subject);
    assert.equal(sent.message.attachments[0]!.url, await sign(ref('attachments/M/0-a')));
    assert.equal(sent.message.attachments[1]!.url, 's3://bucket/attachments/OTHER/0-b', 'not accepted: left');
    assert.equal(sent.message.attachments[2]!.url, sent.message.attachments[0]!.url);
    assert.equal(sent.raw.url, await sign(ref('raw/2026/11/20/M.eml')));
  });

  it('returns the stored bytes themselves when there is nothing to sign', async () => {
    const stored = Buffer.from('{"raw":{"url":"https://example.test/x"}}');
    assert.ok((await fillLinks(stored, sign, () => true)).equals(stored));
  });
});

describe('storedPayloadProblem', () => {
  const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));

  it('accepts a payload of the schema, and one from before an additive field', () => {
    assert.equal(storedPayloadProblem(bytes(payload())), undefined);
    const { spam: _spam, virus: _virus, ...older } = payload();
    assert.equal(storedPayloadProblem(bytes(older)), undefined);
  });

  it('names what is wrong: not JSON, or the fields the schema refuses, the first three and a count', () => {
    assert.match(storedPayloadProblem(Buffer.from('{"type":')) ?? '', /^not JSON: /);
    assert.equal(
      storedPayloadProblem(bytes({ ...payload(), version: 2 })),
      'not a webhook payload: version: Invalid input: expected 1',
    );
    const problem = storedPayloadProblem(bytes({ type: 'email.received' })) ?? '';
    assert.match(
      problem,
      /^not a webhook payload: version: [^;]+; id: [^;]+; receivedAt: [^;]+; and \d+ more$/,
    );
  });

  it('reads a view into a larger buffer by its own bytes only', () => {
    const whole = Buffer.concat([Buffer.from('xx'), bytes(payload()), Buffer.from('yy')]);
    assert.equal(storedPayloadProblem(whole.subarray(2, whole.length - 2)), undefined);
  });
});
