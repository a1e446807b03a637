/**
 * One error class per failure class. Each SMTP error carries its reply so the listener only
 * forwards it: smtp-server sends `responseCode` and the message, and the enhanced status code is
 * written into the message by us (smtp-server's own enhanced-code map would say 5.1.1 for every 550).
 */
export class MailbridgeError extends Error {
  override name = 'MailbridgeError';
}

/** A config file or setting that fails validation; `issues` name each bad field by its path. */
export class ConfigError extends MailbridgeError {
  override name = 'ConfigError';
  readonly issues: readonly string[];
  constructor(source: string, issues: readonly string[], options?: ErrorOptions) {
    super(`invalid config ${source}:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`, options);
    this.issues = issues;
  }
}

/** An SQS record whose body is not the message its queue carries; the message names the record. */
export class InvalidRecordError extends MailbridgeError {
  override name = 'InvalidRecordError';
}

/**
 * SQS refused some entries of a batch (`SendMessageBatch` answers 200 with a `Failed` list) or did
 * not report on them: the caller retries or answers a temporary failure.
 */
export class QueueSendError extends MailbridgeError {
  override name = 'QueueSendError';
}

/** An error that maps to one SMTP reply: `code` (RFC 5321) and `enhanced` status (RFC 3463). */
export class SmtpError extends MailbridgeError {
  override name = 'SmtpError';
  readonly responseCode: number;
  readonly enhanced: string;
  /** What a metric or log line calls this rejection. */
  readonly reason: string;
  constructor(responseCode: number, enhanced: string, text: string, reason: string, options?: ErrorOptions) {
    super(`${enhanced} ${text}`, options);
    this.responseCode = responseCode;
    this.enhanced = enhanced;
    this.reason = reason;
  }
}

/** `550 5.7.1`: the recipient's domain is not one of ours; we are not an open relay. */
export class RelayDeniedError extends SmtpError {
  override name = 'RelayDeniedError';
  constructor(address: string) {
    super(550, '5.7.1', `Relaying denied for <${address}>`, 'relay_denied');
  }
}

/** `550 5.1.1`: our domain, but no route matches the address. */
export class UnknownRecipientError extends SmtpError {
  override name = 'UnknownRecipientError';
  constructor(address: string) {
    super(550, '5.1.1', `Mailbox <${address}> does not exist`, 'unknown_recipient');
  }
}

/** `452 4.5.3`: more recipients than the limit (RFC 5321 §4.5.3.1.8: the client sends the rest later). */
export class TooManyRecipientsError extends SmtpError {
  override name = 'TooManyRecipientsError';
  constructor(limit: number) {
    super(452, '4.5.3', `Too many recipients, at most ${limit} per message`, 'too_many_recipients');
  }
}

/** `552 5.3.4`: the message is larger than the limit, declared by SIZE= or seen in the stream. */
export class MessageTooLargeError extends SmtpError {
  override name = 'MessageTooLargeError';
  constructor(limit: number) {
    super(552, '5.3.4', `Message size exceeds fixed maximum message size of ${limit} bytes`, 'too_large');
  }
}

/** `451 4.3.0`: we could not make the message durable; the sending MTA keeps it and retries. */
export class TemporaryFailureError extends SmtpError {
  override name = 'TemporaryFailureError';
  constructor(text: string, reason: string, options?: ErrorOptions) {
    super(451, '4.3.0', text, reason, options);
  }
}

/** `421 4.7.0`: too many connections overall, from this client address or from its network. */
export class TooManyConnectionsError extends SmtpError {
  override name = 'TooManyConnectionsError';
  constructor(text: string, reason: string) {
    super(421, '4.7.0', text, reason);
  }
}

/** `530 5.7.0`: the port requires STARTTLS before the envelope. */
export class TlsRequiredError extends SmtpError {
  override name = 'TlsRequiredError';
  constructor() {
    super(530, '5.7.0', 'Must issue a STARTTLS command first', 'tls_required');
  }
}

/** `535 5.7.8`: wrong user name or password. */
export class AuthFailedError extends SmtpError {
  override name = 'AuthFailedError';
  constructor() {
    super(535, '5.7.8', 'Authentication credentials invalid', 'auth_failed');
  }
}

/** `550 5.6.0`: a bare LF in DATA (RFC 5321 §2.3.8), refused only when the config asks for it. */
export class BareLineFeedError extends SmtpError {
  override name = 'BareLineFeedError';
  constructor() {
    super(550, '5.6.0', 'Bare LF line endings are not allowed (RFC 5321 section 2.3.8)', 'bare_lf');
  }
}

const SESSION_LIMIT_REPLIES = {
  idle_commands: 'Too many commands without sending mail',
  unauthenticated_commands: 'Too many commands before authentication',
  evicted_idle: 'Closing an idle session to make room, try again later',
} as const;

/**
 * `421 4.7.0`: a session that holds a slot without sending mail: too many commands that make no
 * progress, too many before AUTH, or closed to make room for a new client at the connection limit.
 */
export class SessionLimitError extends SmtpError {
  override name = 'SessionLimitError';
  constructor(reason: keyof typeof SESSION_LIMIT_REPLIES) {
    super(421, '4.7.0', SESSION_LIMIT_REPLIES[reason], reason);
  }
}

/** `421 4.4.2`: no envelope within the envelope timeout (RFC 3463 X.4.2: bad connection). */
export class EnvelopeTimeoutError extends SmtpError {
  override name = 'EnvelopeTimeoutError';
  constructor(seconds: number) {
    super(421, '4.4.2', `No mail transaction within ${seconds} s, closing connection`, 'envelope_timeout');
  }
}

/**
 * `451 4.3.1`: the message could not get room in the spool memory budget in time (RFC 3463 X.3.1:
 * mail system full); nothing was stored and the sending MTA retries later.
 */
export class SpoolFullError extends SmtpError {
  override name = 'SpoolFullError';
  constructor() {
    super(451, '4.3.1', 'Mail system busy, try again later', 'spool_full');
  }
}

/** `530 5.7.0`: the submission ports take mail only after AUTH (RFC 4954 §6). */
export class AuthRequiredError extends SmtpError {
  override name = 'AuthRequiredError';
  constructor() {
    super(530, '5.7.0', 'Authentication required', 'auth_required');
  }
}

/** `454 4.7.0`: the credentials could not be checked now (RFC 4954 §6); the client may retry. */
export class AuthUnavailableError extends SmtpError {
  override name = 'AuthUnavailableError';
  constructor(options?: ErrorOptions) {
    super(454, '4.7.0', 'Temporary authentication failure', 'auth_error', options);
  }
}
