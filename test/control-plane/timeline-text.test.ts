import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeTimelineEvent, type TimelineEvent } from '../../core/control/index.ts';

const received = (filtering?: Extract<TimelineEvent, { type: 'received' }>['filtering']): TimelineEvent => ({
  at: '2026-12-04T12:15:19.123Z',
  type: 'received',
  mailFrom: 'sender@example.com',
  rcptTo: ['support@example.test'],
  size: 529,
  remoteAddress: '127.0.0.1',
  helo: 'client.test',
  tls: true,
  ...(filtering ? { filtering } : {}),
});

const off = { status: 'unavailable', reason: 'disabled' } as const;

// What `mailbridge messages show` and the dev inbox print for a received message.
describe('a received event in words', () => {
  it('says nothing of scanners that are off or of routes whose copy goes on as usual', () => {
    assert.equal(
      describeTimelineEvent(
        received({ spam: off, virus: off, routes: { 'dev-inbox': { action: 'deliver', reasons: [] } } }),
      ),
      'from <sender@example.com> to support@example.test, 529 B, client 127.0.0.1 (TLS)',
    );
    assert.equal(
      describeTimelineEvent(received()),
      describeTimelineEvent(received({ spam: off, virus: off, routes: {} })),
    );
  });

  it('names the scans that ran or failed, and each route held back or let through for a reason', () => {
    assert.equal(
      describeTimelineEvent(
        received({
          spam: { status: 'scanned', score: 7.5, action: 'add header', symbols: [] },
          virus: { status: 'unavailable', reason: 'timeout' },
          routes: {
            support: { action: 'deliver', reasons: ['spf_fail'] },
            billing: { action: 'quarantine', reasons: ['spam'] },
            other: { action: 'deliver', reasons: [] },
          },
        }),
      ),
      'from <sender@example.com> to support@example.test, 529 B, client 127.0.0.1 (TLS); spam score 7.5 (add header), virus scan unavailable (timeout), route support let through (spf_fail), route billing quarantined (spam)',
    );
  });
});

describe('a message parse gave up on, in words', () => {
  it('says how many tries, the last error and where the message is', () => {
    assert.equal(
      describeTimelineEvent({
        at: '2026-12-04T12:20:00.000Z',
        type: 'parse_failed',
        tries: 5,
        error: 'The specified key does not exist.',
      }),
      '5 tries: The specified key does not exist.; in the inbound DLQ',
    );
  });
});
