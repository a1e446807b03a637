export { resolveAuthUsers } from './credentials.ts';
export type { BatchingOptions } from './event-queue.ts';
export type { BoundListener, ListenerOptions, RunningListener } from './listener.ts';
export { startListener } from './listener.ts';
export type { AuthVerifier } from './session-policy.ts';
export { storageClients } from './storage-clients.ts';
export type { TlsMaterial, TlsSources } from './tls.ts';
export { generateSelfSigned, loadTlsMaterial } from './tls.ts';
