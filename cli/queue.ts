import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { sendBatch } from '../core/index.ts';

// Long enough to look at the whole queue and act on what was found; released right after.
const HOLD_SECONDS = 60;

interface InspectedMessage {
  readonly messageId: string;
  readonly body: string;
  readonly sentTimestamp: number;
}

/**
 * Everything on a queue of the local emulator, read through its inspection API (`/_fauxqs/queues/<name>`)
 * without receiving: a true peek, which leaves visibility and receive counts alone.
 */
export async function inspectLocal(endpoint: string, queueUrl: string): Promise<Message[]> {
  const name = queueUrl.slice(queueUrl.lastIndexOf('/') + 1);
  const response = await fetch(`${endpoint}/_fauxqs/queues/${encodeURIComponent(name)}`);
  if (!response.ok) throw new Error(`emulator: GET /_fauxqs/queues/${name}: HTTP ${response.status}`);
  const { messages } = (await response.json()) as {
    messages: {
      ready: InspectedMessage[];
      delayed: InspectedMessage[];
      inflight: { message: InspectedMessage }[];
    };
  };
  return [...messages.ready, ...messages.delayed, ...messages.inflight.map((entry) => entry.message)].map(
    (message) => ({
      MessageId: message.messageId,
      Body: message.body,
      Attributes: { SentTimestamp: String(message.sentTimestamp) },
    }),
  );
}

/**
 * Everything on a queue, held invisible until {@link release} or {@link moveTo}. SQS has no peek:
 * this is the usual receive-then-restore, so it also works on a DLQ in AWS. Short polling samples
 * only some SQS servers, so each receive waits a little (long polling asks all of them).
 */
export async function receiveAll(sqs: SQSClient, queueUrl: string, local: boolean): Promise<Message[]> {
  const messages: Message[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: HOLD_SECONDS,
        WaitTimeSeconds: local ? 0 : 1,
        AttributeNames: ['All'],
      }),
    );
    if (Messages.length === 0) return messages;
    messages.push(...Messages);
  }
}

/**
 * Makes held messages visible again: at once in AWS; after 1 s locally, because fauxqs 2.4.1 with a
 * `dataDir` loses a message whose visibility is set to 0 (its SQLite row refuses a null receive count
 * after the message has already left the in-flight list).
 */
export async function release(
  sqs: SQSClient,
  queueUrl: string,
  messages: readonly Message[],
  local: boolean,
): Promise<void> {
  await sendBatch(
    messages,
    (message, Id) => ({ Id, ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: local ? 1 : 0 }),
    (Entries) => sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries })),
    { what: 'releases' },
  );
}

/** Sends a body to `targetUrl`, then deletes the held message: at worst it is sent twice, never lost. */
export async function moveTo(
  sqs: SQSClient,
  from: { queueUrl: string; message: Message },
  targetUrl: string,
  body: string,
): Promise<void> {
  await sqs.send(new SendMessageCommand({ QueueUrl: targetUrl, MessageBody: body }));
  await sqs.send(
    new DeleteMessageCommand({ QueueUrl: from.queueUrl, ReceiptHandle: from.message.ReceiptHandle! }),
  );
}

/** What is on a queue, left as it was: inspected locally, received and released in AWS. */
export async function peek(
  sqs: SQSClient,
  queueUrl: string,
  endpoint: string | undefined,
): Promise<Message[]> {
  if (endpoint) return inspectLocal(endpoint, queueUrl);
  const messages = await receiveAll(sqs, queueUrl, false);
  await release(sqs, queueUrl, messages, false);
  return messages;
}
