import type { SecretRef } from '../config.ts';
import type { StoreRejectedError } from './errors.ts';
import type { Activity, KeyScope, MessageQuery, Refusal, RouteInput, TimelineEvent } from './schemas.ts';

/**
 * The control plane's store port: the message log, SMTP refusals, API routes, domains and keys,
 * and a change feed of routes and domains. The DynamoDB adapter (dynamodb-store.ts) implements it
 * in AWS and, against the embedded DynamoDB-compatible store, locally. A conditional write that
 * loses a race throws {@link StoreConflictError}; everything else is the backend's error.
 */
export interface ControlStore
  extends MessageLogStore,
    RouteStore,
    DomainStore,
    KeyStore,
    ChangeFeed,
    DuplicateMarkers {}

/**
 * The first message of each fingerprint (content and envelope), so a copy that a sender resends
 * after a lost `250` is marked as a duplicate of the one already delivered.
 */
export interface DuplicateMarkers {
  /**
   * Records `messageId` as the first with `fingerprint` unless another is recorded already, in one
   * conditional write; returns the first's id (`messageId` itself when this is the first, or again).
   * Of two concurrent callers exactly one is first.
   */
  firstMessageWith(fingerprint: string, messageId: string): Promise<string>;
}

/** A page of results; `nextCursor` is opaque, null on the last page. */
export interface Page<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

/** Where a raw message is stored. */
export interface ObjectRef {
  readonly bucket: string;
  readonly key: string;
}

/** One timeline event with the id its writer gave it, so writing it twice stores it once. */
export interface LogEntry {
  readonly eventId: string;
  readonly event: TimelineEvent;
}

/** A message as the log holds it: its timeline, oldest first, and where the raw message is. */
export interface StoredMessage {
  readonly id: string;
  readonly timeline: TimelineEvent[];
  readonly raw: ObjectRef | null;
}

export interface MessageLogStore {
  /**
   * Adds events to a message's record, creating it if needed. Idempotent (an entry's eventId is
   * written once however often the call is repeated) and order-free (events from the listener,
   * parse and deliver may arrive in any order), so a writer can retry blindly. A write the store
   * will refuse however often it is repeated throws {@link StoreRejectedError}.
   */
  appendEvents(messageId: string, entries: readonly LogEntry[], raw?: ObjectRef): Promise<void>;
  getMessage(id: string): Promise<StoredMessage | undefined>;
  /** Newest first; `query.cursor` continues a previous page of the same query. */
  listMessages(query: MessageQuery, now: Date): Promise<Page<StoredMessage>>;
  /**
   * Messages whose log got a follow-up event (see `isFollowUp`) after `since`, oldest first, one
   * entry per write; kept a day. How a reader follows messages it did not see arrive.
   */
  listActivity(query: { since: string; limit: number; cursor?: string }): Promise<Page<Activity>>;
  /**
   * Stores refusals; one record per (minute, client, recipient) however many times it repeats.
   * Throws {@link StoreRejectedError} as {@link appendEvents} does.
   */
  putRefusals(refusals: readonly Refusal[]): Promise<void>;
  /**
   * Newest first, back to `since`. A call reads about 1,000 refusals at most (whole minutes), then
   * answers with what matched and a cursor, as {@link listMessages} does: a recipient never refused
   * costs one bounded read per page, not the whole store.
   */
  listRefusals(query: {
    since: string;
    recipient?: string;
    limit: number;
    cursor?: string;
  }): Promise<Page<Refusal>>;
}

/** A signing secret of an API route: where its value is kept, and its rotation window. */
export interface StoredSecret {
  readonly id: string;
  readonly ref: SecretRef;
  readonly createdAt: string;
  /** When it stops signing (rotated out); null while current. */
  readonly expiresAt: string | null;
}

/** A route made through the API. `revision` grows by one with every write, deletes included. */
export interface StoredRoute {
  readonly route: RouteInput & { id: string };
  readonly secrets: readonly StoredSecret[];
  readonly revision: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface RouteStore {
  /** One page of API routes in id order, after the cursor (a route id): what the API lists and route sync loads. */
  pageRoutes(limit: number, cursor?: string): Promise<Page<StoredRoute>>;
  getRoute(id: string): Promise<StoredRoute | undefined>;
  /** Creates a route; conflict when the id is taken. Returns it with its revision. */
  createRoute(route: Omit<StoredRoute, 'revision'>): Promise<StoredRoute>;
  /** Replaces a route; conflict unless its revision is still `expectedRevision`. */
  updateRoute(route: Omit<StoredRoute, 'revision'>, expectedRevision: number): Promise<StoredRoute>;
  /** Deletes a route; conflict unless it exists at `expectedRevision`. */
  deleteRoute(id: string, expectedRevision: number): Promise<void>;
}

/** A domain added through the API; its TXT token proves who controls its DNS. */
export interface StoredDomain {
  readonly name: string;
  readonly status: 'pending' | 'verified';
  /** Unique per claim: a domain removed and added again needs the new one published. */
  readonly token: string;
  /** The API key id that added it. */
  readonly claimedBy: string;
  readonly createdAt: string;
  /** A pending claim after this may be replaced by a new one, so nobody can hold a name unproven. */
  readonly claimExpiresAt: string;
  readonly verifiedAt: string | null;
  readonly revision: number;
}

export interface DomainStore {
  listDomains(): Promise<StoredDomain[]>;
  /** One page of API domains in name order, after the cursor (a name). */
  pageDomains(limit: number, cursor?: string): Promise<Page<StoredDomain>>;
  getDomain(name: string): Promise<StoredDomain | undefined>;
  /**
   * Claims a name; conflict when it is verified, or pending with a claim that has not expired at
   * `now`. Of two concurrent claims one wins.
   */
  claimDomain(domain: Omit<StoredDomain, 'revision'>, now: Date): Promise<StoredDomain>;
  /** pending → verified, only for the claim holding `token`; conflict otherwise. */
  markDomainVerified(name: string, token: string, at: string): Promise<StoredDomain>;
  /** Conflict when absent. */
  deleteDomain(name: string): Promise<void>;
}

/** An API key; the secret itself is never stored, only its SHA-256. */
export interface StoredKey {
  readonly id: string;
  readonly name: string;
  readonly scope: KeyScope;
  readonly hash: string;
  readonly createdAt: string;
}

export interface KeyStore {
  createKey(key: StoredKey): Promise<void>;
  getKey(id: string): Promise<StoredKey | undefined>;
  listKeys(): Promise<StoredKey[]>;
  /** Conflict when absent (already revoked). */
  deleteKey(id: string): Promise<void>;
}

/** One write to a route or domain, carrying the state after it (null: deleted). */
export type Change =
  | {
      readonly id: string;
      readonly kind: 'route';
      readonly key: string;
      readonly revision: number;
      readonly route: StoredRoute | null;
    }
  | {
      readonly id: string;
      readonly kind: 'domain';
      readonly key: string;
      readonly revision: number;
      readonly domain: StoredDomain | null;
    };

export interface ChangeFeed {
  /**
   * Changes with an id greater than `afterId` (ids are ULIDs: time-ordered), oldest first. A
   * change may be committed a little after a later id is visible, so readers ask again from a
   * little before what they saw last and apply each change only if its revision is newer.
   */
  changesSince(afterId: string): Promise<Change[]>;
}
