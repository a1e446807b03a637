import { builtOnFirstUse, functionContainer } from '../container.ts';
import { createParseHandler } from './create-handler.ts';

const { s3, sqs, names, controlStore, loadConfig } = functionContainer([
  'bucket',
  'deliveryQueueUrl',
  'inboundDlqUrl',
]);

/** The parse Lambda (SQS `inbound` event source, partial batch responses on). */
export const handler = builtOnFirstUse(async () =>
  createParseHandler({ s3, sqs, ...names, config: await loadConfig(), controlStore }),
);
