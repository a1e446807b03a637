import { Duration } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { QUEUE_SETTINGS } from '../core/index.ts';

/** Lambda's SQS guidance: visibility at least 6 × the function timeout, so retries of a slow batch don't overlap. */
const VISIBILITY_PER_TIMEOUT = 6;
/** Days a DLQ keeps a message: SQS's maximum, since a DLQ keeps the original enqueue time. */
export const DLQ_RETENTION_DAYS = 14;

export interface QueuesProps {
  /**
   * Timeout of the parse function; the inbound queue's visibility must cover 6 × it.
   * @default - QUEUE_SETTINGS.functionTimeoutSeconds.parse
   */
  readonly parseTimeout?: Duration;
  /**
   * Timeout of the deliver function; the delivery queue's visibility must cover 6 × it.
   * @default - QUEUE_SETTINGS.functionTimeoutSeconds.deliver
   */
  readonly deliverTimeout?: Duration;
}

/**
 * The inbound (listener → parse) and delivery (parse → deliver) queues, each with a DLQ. Encrypted
 * with SQS-managed keys, TLS only. Receive counts, visibility and retention come from core's
 * QUEUE_SETTINGS, which the local runtime uses too.
 */
export class Queues extends Construct {
  public readonly inbound: Queue;
  public readonly inboundDlq: Queue;
  public readonly delivery: Queue;
  public readonly deliveryDlq: Queue;

  constructor(scope: Construct, id: string, props: QueuesProps = {}) {
    super(scope, id);
    const timeouts = {
      inbound: props.parseTimeout ?? Duration.seconds(QUEUE_SETTINGS.functionTimeoutSeconds.parse),
      delivery: props.deliverTimeout ?? Duration.seconds(QUEUE_SETTINGS.functionTimeoutSeconds.deliver),
    };
    const make = (name: 'inbound' | 'delivery') => {
      const settings = QUEUE_SETTINGS[name];
      const needed = timeouts[name].toSeconds() * VISIBILITY_PER_TIMEOUT;
      if (settings.visibilityTimeoutSeconds < needed) {
        throw new Error(
          `${this.node.path}: ${name} visibility ${settings.visibilityTimeoutSeconds}s is below 6 × the function timeout (${needed}s)`,
        );
      }
      const label = name === 'inbound' ? 'Inbound' : 'Delivery';
      const dlq = new Queue(this, `${label}Dlq`, {
        encryption: QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        retentionPeriod: Duration.days(DLQ_RETENTION_DAYS),
      });
      const queue = new Queue(this, label, {
        encryption: QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        visibilityTimeout: Duration.seconds(settings.visibilityTimeoutSeconds),
        retentionPeriod: Duration.days(settings.retentionDays),
        deadLetterQueue: { queue: dlq, maxReceiveCount: settings.maxReceiveCount },
      });
      return [queue, dlq] as const;
    };
    [this.inbound, this.inboundDlq] = make('inbound');
    [this.delivery, this.deliveryDlq] = make('delivery');
  }
}
