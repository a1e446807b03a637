import { createHash, randomUUID } from 'node:crypto';
import type { SQSEvent, SQSRecord } from 'aws-lambda';

/** One SQS record shaped exactly as Lambda's event source mapping delivers it. */
export function sqsRecord(body: unknown, queueName = 'mailbridge-inbound'): SQSRecord {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const now = String(Date.now());
  return {
    messageId: randomUUID(),
    receiptHandle: `AQEB${randomUUID().replaceAll('-', '')}`,
    body: text,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: now,
      SenderId: 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: now,
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(text).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:us-east-1:000000000000:${queueName}`,
    awsRegion: 'us-east-1',
  };
}

/** An SQS event with one record per body. */
export function sqsEvent(bodies: readonly unknown[], queueName?: string): SQSEvent {
  return { Records: bodies.map((body) => sqsRecord(body, queueName)) };
}
