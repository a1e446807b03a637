import { randomUUID } from 'node:crypto';
import type { Message, MessageAttributeValue } from '@aws-sdk/client-sqs';
import type { Context, SQSEvent, SQSMessageAttribute, SQSRecord, SQSRecordAttributes } from 'aws-lambda';

function lambdaAttribute(value: MessageAttributeValue): SQSMessageAttribute {
  const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
  return {
    ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
    ...(value.BinaryValue !== undefined ? { binaryValue: base64(value.BinaryValue) } : {}),
    stringListValues: value.StringListValues ?? [],
    binaryListValues: (value.BinaryListValues ?? []).map(base64),
    dataType: value.DataType!,
  };
}

/**
 * Converts SQS `ReceiveMessage` results (asked with `AttributeNames: ['All']` and
 * `MessageAttributeNames: ['All']`) into the event Lambda's SQS event source mapping hands a
 * function: lower-camel record fields, base64 binary attributes, `eventSource: 'aws:sqs'`.
 * `region` defaults to the one in `queueArn`.
 */
export function sqsEventFromMessages(
  messages: readonly Message[],
  queueArn: string,
  region: string = queueArn.split(':')[3]!,
): SQSEvent {
  return {
    Records: messages.map((message): SQSRecord => {
      const attributes = message.Attributes ?? {};
      return {
        messageId: message.MessageId!,
        receiptHandle: message.ReceiptHandle!,
        body: message.Body ?? '',
        attributes: {
          ...attributes,
          ApproximateReceiveCount: attributes.ApproximateReceiveCount!,
          SentTimestamp: attributes.SentTimestamp!,
          SenderId: attributes.SenderId!,
          ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp!,
        } as SQSRecordAttributes,
        messageAttributes: Object.fromEntries(
          Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
            name,
            lambdaAttribute(value),
          ]),
        ),
        md5OfBody: message.MD5OfBody!,
        ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
        eventSource: 'aws:sqs',
        eventSourceARN: queueArn,
        awsRegion: region,
      };
    }),
  };
}

/**
 * A Lambda invocation context for a function with `timeoutMs`. The callback-era `done`, `fail`
 * and `succeed` throw, as handlers on `nodejs24.x` must return a promise instead.
 */
export function lambdaContext(functionName: string, region: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  const unsupported = (): never => {
    throw new Error('callback-style handlers are not supported on nodejs24.x: return a promise');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/[$LATEST]${randomUUID().replaceAll('-', '')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}
