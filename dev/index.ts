export type { Emulator, EmulatorOptions } from './emulator.ts';
export { startEmulator } from './emulator.ts';
export type { LocalResources } from './resources.ts';
export { emulatorClients, LOCAL_RESOURCE_NAMES, provisionLocalResources } from './resources.ts';
