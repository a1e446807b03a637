/**
 * The S3 + SQS emulator and the embedded DynamoDB-compatible store in a process of their own, so
 * their CPU and memory are not counted against the server under test. Replies with their endpoints
 * and the pipeline's bucket and queues once ready.
 */
import { startLocalDynamo } from '../dev/dynamo.ts';
import { emulatorClients, provisionLocalResources, startEmulator } from '../dev/index.ts';
import { serve } from './ipc.ts';

const emulator = await startEmulator();
const { s3, sqs } = emulatorClients(emulator.endpoint);
const resources = await provisionLocalResources({ s3, sqs });
s3.destroy();
sqs.destroy();
const dynamo = await startLocalDynamo();
serve({}, { endpoint: emulator.endpoint, dynamoEndpoint: dynamo.endpoint, ...resources });
