import { MailbridgeError, SmtpError } from '../errors.ts';

/** `550 5.7.1` for a domain added through the API whose DNS proof is not yet checked. */
export class DomainNotVerifiedError extends SmtpError {
  override name = 'DomainNotVerifiedError';
  constructor(address: string) {
    super(550, '5.7.1', `Relaying denied for <${address}>: domain not verified`, 'domain_unverified');
  }
}

/** An API answer other than success: HTTP status, a stable code and a message naming what is wrong. */
export class ApiError extends MailbridgeError {
  override name = 'ApiError';
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.code = code;
  }
}

/**
 * A conditional write lost: the item changed or exists already (DynamoDB
 * `ConditionalCheckFailedException`). The API answers 409.
 */
export class StoreConflictError extends MailbridgeError {
  override name = 'StoreConflictError';
}

/**
 * The store refused a write as it will every time it is repeated: the request is invalid
 * (DynamoDB `ValidationException`, e.g. an item over 400 KB) or the caller may not make it
 * (`AccessDeniedException`, a 403), or the table does not exist. Retrying cannot help.
 */
export class StoreRejectedError extends MailbridgeError {
  override name = 'StoreRejectedError';
}
