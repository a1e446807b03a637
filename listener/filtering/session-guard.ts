import { RateLimitedError, RateLimiter, type RateLimitsConfig } from '../../core/filtering/index.ts';

/** What the guard needs to know of a session: smtp-server's session id and the client's address. */
export interface GuardedSession {
  readonly id: string;
  readonly remoteAddress: string;
}

const MINUTE = 60_000;

/**
 * The per-client-address rate limits of `limits:` for the listener's session hooks. Each
 * method returns the error to answer, or undefined to go on:
 * - `onConnect`: connections per minute → `421 4.7.0` (closes); AUTH lockout on the AUTH ports;
 * - `onMailFrom`: messages per minute → `450 4.7.1` (this transaction only; the session stays);
 * - `onRcptRefused`: after each refused RCPT, the dictionary-attack limit → `421 4.7.0`;
 * - `onAuthFailure` / `onAuthSuccess`: failed AUTH per address over a window → lockout `421 4.7.0`.
 * Addresses are counted as given: the caller passes the client key (an IPv6 client's /64, say).
 * Every limiter remembers at most `trackedAddresses` keys, so a flood of addresses costs bounded
 * memory; failed RCPTs are counted per open session and forgotten at `onClose`.
 */
export class SessionGuard {
  readonly #config: RateLimitsConfig;
  readonly #connections: RateLimiter | undefined;
  readonly #messages: RateLimiter | undefined;
  readonly #authFailures: RateLimiter;
  readonly #failedRecipients = new Map<string, number>();

  constructor(config: RateLimitsConfig, options: { now?: () => number } = {}) {
    this.#config = config;
    const limiter = (limit: number, windowMs: number) =>
      new RateLimiter({ limit, windowMs, maxKeys: config.trackedAddresses, now: options.now });
    this.#connections = config.connectionsPerMinute
      ? limiter(config.connectionsPerMinute, MINUTE)
      : undefined;
    this.#messages = config.messagesPerMinute ? limiter(config.messagesPerMinute, MINUTE) : undefined;
    this.#authFailures = limiter(config.maxAuthFailuresPerIp, config.authFailureWindow * 1000);
  }

  onConnect(session: GuardedSession, options: { authPort: boolean }): RateLimitedError | undefined {
    if (options.authPort && this.#authFailures.exceeded(session.remoteAddress)) return authLockout();
    if (this.#connections && !this.#connections.hit(session.remoteAddress)) {
      return new RateLimitedError(
        421,
        'Too many connections from your address, try again later',
        'connection_rate',
      );
    }
    return undefined;
  }

  onMailFrom(session: GuardedSession): RateLimitedError | undefined {
    if (this.#messages && !this.#messages.hit(session.remoteAddress)) {
      return new RateLimitedError(
        450,
        'Too many messages from your address, try again later',
        'message_rate',
      );
    }
    return undefined;
  }

  onRcptRefused(session: GuardedSession): RateLimitedError | undefined {
    const failed = (this.#failedRecipients.get(session.id) ?? 0) + 1;
    this.#failedRecipients.set(session.id, failed);
    if (failed < this.#config.failedRecipientsPerSession) return undefined;
    return new RateLimitedError(421, 'Too many invalid recipients, closing connection', 'failed_recipients');
  }

  /** Whether the address is locked out of AUTH now (checked before verifying a password). */
  authLocked(session: GuardedSession): RateLimitedError | undefined {
    return this.#authFailures.exceeded(session.remoteAddress) ? authLockout() : undefined;
  }

  /** Counts a failed AUTH; the lockout error once the address reaches the limit. */
  onAuthFailure(session: GuardedSession): RateLimitedError | undefined {
    this.#authFailures.hit(session.remoteAddress);
    return this.authLocked(session);
  }

  onAuthSuccess(session: GuardedSession): void {
    this.#authFailures.reset(session.remoteAddress);
  }

  onClose(session: GuardedSession): void {
    this.#failedRecipients.delete(session.id);
  }
}

const authLockout = () =>
  new RateLimitedError(421, 'Too many authentication failures, try again later', 'auth_lockout');
