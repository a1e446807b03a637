export * from './deliver/index.ts';
export * from './parse/index.ts';
export type { InboundRetryPortDeps } from './retry.ts';
export { envelopeFromReceived, inboundEventFromLog, inboundRetryPort, measureRaw } from './retry.ts';
