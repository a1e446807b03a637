import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { startTestEmulator } from '../../harness/emulator.ts';

describe('local emulator with a dataDir', () => {
  it('keeps stored objects and queued messages across a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-data-'));
    try {
      const first = await startTestEmulator({ dataDir });
      const { bucket, inboundQueueUrl } = first.resources;
      await first.s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'raw/2026/01/01/x.eml',
          Body: 'Subject: kept\r\n\r\nhi\r\n',
        }),
      );
      const sent = await first.sqs.send(
        new SendMessageCommand({ QueueUrl: inboundQueueUrl, MessageBody: '{"id":"kept"}' }),
      );
      await first.close();

      const second = await startTestEmulator({ dataDir });
      try {
        const object = await second.s3.send(
          new GetObjectCommand({ Bucket: bucket, Key: 'raw/2026/01/01/x.eml' }),
        );
        assert.equal(await object.Body!.transformToString(), 'Subject: kept\r\n\r\nhi\r\n');
        const received = await second.sqs.send(
          new ReceiveMessageCommand({ QueueUrl: second.resources.inboundQueueUrl, WaitTimeSeconds: 1 }),
        );
        assert.equal(received.Messages?.[0]?.MessageId, sent.MessageId);
        assert.equal(received.Messages?.[0]?.Body, '{"id":"kept"}');
      } finally {
        await second.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
