export { DEV_DKIM, DEV_DNS_ZONE_FILE, dkimSignMessage } from './auth/dev-dkim.ts';
export type { ConsoleSink } from './console.ts';
export { formatMessageEvent, messageEventOf } from './console.ts';
export type { Emulator, EmulatorOptions } from './emulator.ts';
export { startEmulator } from './emulator.ts';
export type { LocalFunctions, LocalFunctionsOptions, LocalHandlersOptions } from './handlers.ts';
export { createLocalHandlers, startLocalFunctions } from './handlers.ts';
export type {
  DeliveryOutcome,
  DeliveryOutcomeSource,
  Inbox,
  InboxEntry,
  InboxOptions,
  RawMessageReader,
} from './inbox.ts';
export { s3RawReader, startInbox } from './inbox.ts';
export type { MessageEvent, MessageEventReader } from './message-events.ts';
export { followMessageEvents, MessageEventSchema, messageEventsFile } from './message-events.ts';
export type { Poller, PollerOptions, PollerStats, SqsHandler } from './poller.ts';
export { startPoller } from './poller.ts';
export type { LocalResources } from './resources.ts';
export { emulatorClients, LOCAL_RESOURCE_NAMES, provisionLocalResources } from './resources.ts';
export type { LocalApi, LocalPorts, LocalRuntime, LocalRuntimeOptions } from './runtime.ts';
export { describeRuntime, PortsInUseError, startLocalRuntime } from './runtime.ts';
export type { RunningRuntime } from './runtime-state.ts';
export { findRunningRuntime, PORT_VARIABLES } from './runtime-state.ts';
export { lambdaContext, sqsEventFromMessages } from './sqs-event.ts';
