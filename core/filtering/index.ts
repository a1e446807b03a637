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
export type { DnsblConfig, RateLimitsConfig, RouteFiltering, ScannersConfig } from './schemas.ts';
export {
  DnsblConfigSchema,
  RateLimitsConfigSchema,
  RouteFilteringSchema,
  ScannersConfigSchema,
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
  spamVerdict,
  virusVerdict,
} from './verdicts.ts';
