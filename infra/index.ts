export type { ControlPlaneProps, ControlTableProps } from './control-plane.ts';
export { ControlPlane, ControlTable } from './control-plane.ts';
export type { DeployedConfigProps } from './deployed-config.ts';
export { DeployedConfig } from './deployed-config.ts';
export { FARGATE_CPUS, fargateMemoryChoices, fargateTaskSize } from './fargate.ts';
export type { BundledFunctionProps, FunctionOptions, FunctionsProps } from './functions.ts';
export {
  bundledFunction,
  FUNCTION_BUNDLING,
  FUNCTION_NAMES,
  FUNCTION_NODE_OPTIONS,
  FUNCTION_V8_FLAGS,
  Functions,
} from './functions.ts';
export { LISTENER_V8_FLAGS } from './listener-image.ts';
export type { ListenerServiceProps } from './listener-service.ts';
export { ListenerService } from './listener-service.ts';
export type { MonitoringProps } from './monitoring.ts';
export { Monitoring } from './monitoring.ts';
export type { QueuesProps } from './queues.ts';
export { DLQ_RETENTION_DAYS, Queues } from './queues.ts';
export type { ScannerSidecarSettings, ScannerSidecarsProps } from './scanner-sidecars.ts';
export {
  addScannerSidecars,
  rspamdHealthCheck,
  SCANNER_IMAGES,
  SIDECAR_SIZES,
  sidecarResources,
  withScannerSidecars,
} from './scanner-sidecars.ts';
export type { SecretsProps } from './secrets.ts';
export { Secrets } from './secrets.ts';
export type { Deployment, DeploySettings, DeploySettingsInput } from './settings.ts';
export { DeploySettingsSchema, loadDeployment, parseDeploySettings } from './settings.ts';
export type { MailbridgeStackProps } from './stack.ts';
export { MailbridgeStack } from './stack.ts';
export type { StorageProps } from './storage.ts';
export { Storage } from './storage.ts';
