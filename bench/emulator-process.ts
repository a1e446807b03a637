/**
 * The S3 + SQS emulator in a process of its own, so its CPU is not counted against the server
 * under test. Replies with its endpoint and the pipeline's bucket and queues once ready.
 */
import { emulatorClients, provisionLocalResources, startEmulator } from '../dev/index.ts';
import { serve } from './ipc.ts';

const emulator = await startEmulator();
const { s3, sqs } = emulatorClients(emulator.endpoint);
const resources = await provisionLocalResources({ s3, sqs });
s3.destroy();
sqs.destroy();
serve({}, { endpoint: emulator.endpoint, ...resources });
