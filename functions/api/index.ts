export { fromApiGatewayEvent, toApiGatewayResult } from './adapter.ts';
export type { ApiFunctionDeps } from './create-handler.ts';
export { createApiFunctionHandler, RAW_LINK_SECONDS } from './create-handler.ts';
export {
  ROUTE_SECRET_PREFIX,
  routeSecretName,
  secretsManagerSigningSecretStore,
} from './secrets-manager-store.ts';
