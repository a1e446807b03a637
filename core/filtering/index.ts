export {
  ContentRejectedError,
  DnsblListedError,
  dmarcRejected,
  RateLimitedError,
  SenderBlockedError,
  SpfFailError,
} from './errors.ts';
export type { HeaderFacts } from './header-block.ts';
export { HeaderBlock, headerFacts } from './header-block.ts';
export type { RateLimiterOptions } from './rate-limiter.ts';
export { RateLimiter } from './rate-limiter.ts';
export type {
  DnsblConfig,
  FilteringFacts,
  RateLimitsConfig,
  RouteFiltering,
  ScannersConfig,
} from './schemas.ts';
export {
  DnsblConfigSchema,
  FilteringFactsSchema,
  RATE_LIMIT_FIELDS,
  RateLimitsConfigSchema,
  RouteFilteringSchema,
  ScannersConfigSchema,
  SpamVerdictSchema,
  VirusVerdictSchema,
} from './schemas.ts';
export type { SenderEntry, SenderFacts } from './senders.ts';
export { parseSenderEntry, plainAddress, SenderList } from './senders.ts';
export type {
  DmarcFacts,
  RecipientDecision,
  RouteDecision,
  SpamScan,
  SpamVerdict,
  UnavailableReason,
  VirusScan,
  VirusVerdict,
} from './verdicts.ts';
export {
  combineRoutes,
  decideRecipient,
  decideRoute,
  decideSpf,
  routeOutcome,
  spamVerdict,
  trimSpamScan,
  virusVerdict,
} from './verdicts.ts';
