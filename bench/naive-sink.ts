import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import { SMTPServer } from 'smtp-server';

/**
 * The peer of the durable path: a durable sink the way most teams write it first. Per message one
 * lib-storage `Upload` with its defaults (4 parts of 5 MiB in flight), then one `SendMessage`,
 * then 250. No batching, no tuning. The PassThrough is the one fix everybody needs (lib-storage
 * reads a body stream's live `byteLength` as its total length, which is 0 at the start of DATA).
 */
export function naiveDurableSink(options: {
  endpoint: string;
  bucket: string;
  queueUrl: string;
  key: string | Buffer;
  cert: string | Buffer;
}): SMTPServer {
  const common = {
    endpoint: options.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  };
  const s3 = new S3Client({ ...common, forcePathStyle: true });
  const sqs = new SQSClient(common);
  return new SMTPServer({
    key: options.key,
    cert: options.cert,
    authOptional: true,
    disabledCommands: ['AUTH'],
    disableReverseLookup: true,
    logger: false,
    size: 64 * 1024 * 1024,
    onData(stream, session, callback) {
      const key = `raw/${randomUUID()}.eml`;
      const envelope = {
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        rcptTo: session.envelope.rcptTo.map((recipient) => recipient.address),
      };
      const body = new PassThrough();
      stream.pipe(body);
      new Upload({ client: s3, params: { Bucket: options.bucket, Key: key, Body: body } })
        .done()
        .then(() =>
          sqs.send(
            new SendMessageCommand({
              QueueUrl: options.queueUrl,
              MessageBody: JSON.stringify({ key, ...envelope }),
            }),
          ),
        )
        .then(
          () => callback(null, 'queued'),
          (error: Error) => callback(Object.assign(error, { responseCode: 451 })),
        );
    },
  });
}
