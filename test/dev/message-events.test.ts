import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  followMessageEvents,
  type MessageEvent,
  messageEventOf,
  messageEventsFile,
} from '../../dev/index.ts';
import { appendMessageEvent } from '../../dev/message-events.ts';

const accepted: MessageEvent = {
  kind: 'accepted',
  at: '2026-12-04T04:43:51.000Z',
  messageId: '01M8ZNV9JW12Q5PTBX9ZWX1DMT',
  size: 512,
  recipients: 1,
  remoteAddress: '127.0.0.1',
};
const failed: MessageEvent = {
  kind: 'failed',
  at: '2026-12-04T04:43:55.000Z',
  messageId: '01M8ZNV9JW12Q5PTBX9ZWX1DMT',
  routeId: 'crm',
  endpoint: 'https://crm.app.test/mail',
  webhookId: 'msg_x',
  tries: 1,
  status: 410,
  error: 'HTTP 410: endpoint removed',
  reason: 'gone',
};

describe('message events (the local message log)', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-events-'));
    file = messageEventsFile(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a reader from the end sees only what comes after it, whole lines only, and skips a broken line', async () => {
    appendMessageEvent(file, accepted);
    const tail = await followMessageEvents(file, { from: 'end' });
    try {
      assert.deepEqual(await tail.read(), []);
      const line = `${JSON.stringify(failed)}\n`;
      appendFileSync(file, 'not json\n{"kind":"delivered"}\n');
      appendFileSync(file, line.slice(0, 40));
      assert.deepEqual(await tail.read(), [], 'half a line is not an event yet');
      appendFileSync(file, line.slice(40));
      assert.deepEqual(await tail.read(), [failed]);
    } finally {
      await tail.close();
    }
    const all = await followMessageEvents(file, { from: 'start' });
    try {
      assert.deepEqual(await all.read(), [accepted, failed]);
      await truncate(file, 0);
      appendMessageEvent(file, accepted);
      assert.deepEqual(await all.read(), [accepted], 'a file started again is read from its start');
    } finally {
      await all.close();
    }
  });

  it('stands for the log records of the parts: the deliver function dead-lettering a job', () => {
    assert.deepEqual(
      messageEventOf({
        level: 'ERROR',
        service: 'deliver',
        message: 'webhook dead-lettered',
        timestamp: failed.at,
        messageId: failed.messageId,
        webhookId: 'msg_x',
        routeId: 'crm',
        endpoint: 'https://crm.app.test/mail',
        tries: 1,
        class: 'permanent',
        status: 410,
        error: 'HTTP 410: endpoint removed',
        reason: 'gone',
      }),
      failed,
    );
    assert.equal(
      messageEventOf({ service: 'parse', message: 'parsed', messageId: failed.messageId }),
      undefined,
    );
  });
});
