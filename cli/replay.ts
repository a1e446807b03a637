import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { type Command, Option } from 'commander';
import { decodeTime } from 'ulid';
import { classifyS3Error } from '../core/aws/index.ts';
import {
  createLogger,
  createMetrics,
  ENV,
  type InboundEvent,
  InboundEventSchema,
  messagePayloadsPrefix,
  newMessageId,
  Router,
  rawObjectKey,
} from '../core/index.ts';
import { type ConnectionOptions, configInUse, connect, withConnectionOptions } from './connection.ts';
import { logRequeued } from './message-log.ts';
import { CliError, collect, printJson, UsageError } from './output.ts';

interface ReplayOptions extends ConnectionOptions {
  config?: string;
  route?: string;
  newId?: boolean;
  rcpt: string[];
  json?: boolean;
}

type Envelope = Pick<InboundEvent['envelope'], 'mailFrom' | 'rcptTo' | 'helo' | 'remoteAddress' | 'tls'>;

/** The envelope as the stored payloads of the first parse recorded it (one payload per route). */
async function envelopeFromPayloads(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<Envelope | undefined> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  let envelope: Envelope | undefined;
  for (const { Key } of listed.Contents ?? []) {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }));
    const payload = JSON.parse(await object.Body!.transformToString()) as { envelope: Envelope };
    const rcptTo = [...new Set([...(envelope?.rcptTo ?? []), ...payload.envelope.rcptTo])];
    envelope = { ...payload.envelope, rcptTo };
  }
  return envelope;
}

/** `mailbridge replay`. */
export function registerReplay(program: Command): void {
  withConnectionOptions(
    program
      .command('replay')
      .description(
        'parse a stored raw message again and queue fresh deliveries (same webhook-id unless --new-id)',
      )
      .argument('<message-id>', 'the id from `250 2.0.0 queued as <id>`')
      .addOption(
        new Option(
          '--config <file>',
          'config file or s3:// URL (default locally: the one the running `mailbridge dev` uses, else dev/mailbridge.yaml)',
        ).env(ENV.config),
      )
      .option('--route <id>', 'only the recipients of this route')
      .option('--new-id', 'a new message id, so new webhook-ids (receivers will not dedupe it)')
      .option(
        '--rcpt <address>',
        'recipients, when the stored data does not name them; repeatable',
        collect,
        [],
      )
      .option('--json', 'print JSON'),
  ).action(async (id: string, options: ReplayOptions) => {
    let time: number;
    try {
      time = decodeTime(id);
    } catch {
      throw new UsageError(`not a message id (ULID): ${id}`);
    }
    // The functions log at info on stdout; only problems belong in the CLI's output.
    process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
    process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
    const connection = await connect(options);
    // Loaded on use, like the runtime: the parser and mail authentication take long to load.
    const { boundedResolver, envelopeFromReceived, measureRaw, processInboundEvent, systemResolver } =
      await import('../functions/index.ts');
    try {
      const { config, source } = await configInUse(
        connection,
        options.config,
        connection.local ? 'local' : 'aws',
      );
      const router = new Router(config);
      if (options.route && !config.routes.some((route) => route.id === options.route)) {
        throw new UsageError(`no route ${options.route} in ${source}`);
      }
      const bucket = connection.bucket();
      const key = rawObjectKey(id, new Date(time));
      const raw = {
        bucket,
        key,
        ...(await measureRaw(connection.s3, { bucket, key }).catch((error: unknown) => {
          if (classifyS3Error(error) === 'missing') {
            throw new CliError(`no raw message at s3://${bucket}/${key}`);
          }
          throw error;
        })),
      };
      const stored = await envelopeFromPayloads(connection.s3, bucket, messagePayloadsPrefix(id));
      const envelope = stored ?? (await envelopeFromReceived(connection.s3, { bucket, key }));
      const envelopeSource = stored ? 'stored payloads' : 'Received header';
      const recipients = (options.rcpt.length > 0 ? options.rcpt : envelope.rcptTo).filter((rcpt) => {
        if (!options.route) return true;
        try {
          return router.resolve(rcpt).route.id === options.route;
        } catch {
          return false;
        }
      });
      if (recipients.length === 0) {
        throw new CliError(
          options.route
            ? `no recipient of ${id} goes to route ${options.route}`
            : `the recipients of ${id} are not recorded (several, never parsed): name them with --rcpt`,
        );
      }
      const replayId = options.newId ? newMessageId() : id;
      const event = InboundEventSchema.parse({
        version: 1,
        id: replayId,
        receivedAt: new Date(time).toISOString(),
        raw,
        // Not recorded anywhere after the session; parse does not use them.
        envelope: { ...envelope, rcptTo: recipients, remotePort: 0, localPort: 0, authUser: null },
      } satisfies InboundEvent);
      const startedAt = new Date();
      const { jobs } = await processInboundEvent(event, {
        s3: connection.s3,
        sqs: connection.sqs,
        bucket,
        deliveryQueueUrl: await connection.queueUrl('delivery'),
        inboundDlqUrl: await connection.queueUrl('inboundDlq'),
        config,
        router,
        resolver: boundedResolver(systemResolver()),
        logger: createLogger('replay').createChild({ persistentKeys: { messageId: replayId } }),
        metrics: createMetrics('replay'),
      });
      // Under the id it was delivered as: a new id does not make the original's deliveries pending.
      if (jobs.length > 0) {
        await logRequeued(
          connection,
          [{ messageId: replayId, event: { type: 'replayed', route: options.route ?? null } }],
          startedAt,
        );
      }
      const queued = jobs.map(({ routeId, endpoint, webhookId, recipients }) => ({
        routeId,
        endpoint,
        webhookId,
        recipients,
      }));
      if (options.json) {
        printJson({ messageId: id, replayedAs: replayId, envelopeSource, jobs: queued });
      } else {
        const as = replayId === id ? '' : ` as ${replayId}`;
        console.log(
          `replayed ${id}${as} (envelope from ${envelopeSource}): ${jobs.length} delivery job(s) queued`,
        );
        for (const job of queued)
          console.log(`  route ${job.routeId} → ${job.endpoint} webhook-id ${job.webhookId}`);
      }
      if (jobs.length === 0) throw new CliError('nothing queued: no recipient routes anywhere now');
    } finally {
      connection.close();
    }
  });
}
