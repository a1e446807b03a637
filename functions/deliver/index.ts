export type { DeadLetterEntry } from '../../core/index.ts';
export type { DeliverDeps } from './deliver.ts';
export { createDeliverHandler, USER_AGENT } from './deliver.ts';
export type { HttpSenderOptions } from './sender.ts';
export { createHttpSender } from './sender.ts';
