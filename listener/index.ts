export { resolveAuthUsers } from './credentials.ts';
export type { BatchingOptions } from './event-queue.ts';
export type { AuthVerifier, BoundListener, ListenerOptions, RunningListener } from './listener.ts';
export { startListener } from './listener.ts';
export { storageClients } from './storage-clients.ts';
export type { TlsMaterial, TlsSources } from './tls.ts';
export { generateSelfSigned, loadTlsMaterial } from './tls.ts';
