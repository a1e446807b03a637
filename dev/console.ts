import { Logger, type LogItem, LogLevelThreshold } from '@aws-lambda-powertools/logger';
import type { ConstructorOptions } from '@aws-lambda-powertools/logger/types';
import { appendMessageEvent, type MessageEvent } from './message-events.ts';

type Attributes = Record<string, unknown>;

const str = (value: unknown) => (typeof value === 'string' ? value : null);
const num = (value: unknown) => (typeof value === 'number' ? value : null);

/**
 * The message event a log record stands for, or undefined for every other record: the listener's
 * `accepted`, and the deliver function's `webhook delivered`, `webhook try failed, retry scheduled`
 * and `webhook dead-lettered` (docs/architecture.md, "Log events").
 */
export function messageEventOf(record: Attributes): MessageEvent | undefined {
  const at = str(record.timestamp) ?? new Date().toISOString();
  const messageId = str(record.messageId);
  if (!messageId) return undefined;
  if (record.service === 'listener' && record.message === 'accepted') {
    return {
      kind: 'accepted',
      at,
      messageId,
      size: num(record.size),
      recipients: num(record.recipients),
      remoteAddress: str(record.remoteAddress),
    };
  }
  if (record.service !== 'deliver') return undefined;
  const delivery = {
    at,
    messageId,
    routeId: str(record.routeId),
    endpoint: str(record.endpoint),
    webhookId: str(record.webhookId),
    tries: num(record.tries),
    status: num(record.status),
    error: str(record.error),
  };
  switch (record.message) {
    case 'webhook delivered':
      return { kind: 'delivered', ...delivery };
    case 'webhook try failed, retry scheduled':
      return { kind: 'retry', ...delivery, delaySeconds: num(record.delaySeconds) ?? 0 };
    case 'webhook dead-lettered':
      return { kind: 'failed', ...delivery, reason: str(record.reason) ?? 'unknown' };
    default:
      return undefined;
  }
}

function bytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

/** One line for people: `12:00:01 delivered 01J… → route dev-inbox http://… HTTP 204 (try 1)`. */
export function formatMessageEvent(event: MessageEvent): string {
  const time = event.at.slice(11, 19);
  if (event.kind === 'accepted') {
    const size = event.size === null ? '' : ` ${bytes(event.size)}`;
    const count = event.recipients === null ? '' : `, ${event.recipients} recipient(s)`;
    return `${time} accepted  ${event.messageId}${size}${count} from ${event.remoteAddress ?? '?'}`;
  }
  const target = `→ route ${event.routeId ?? '?'} ${event.endpoint ?? '?'}`;
  const answer = event.status === null ? '' : ` HTTP ${event.status}`;
  const tries = event.tries === null ? '' : ` (try ${event.tries})`;
  const error = event.error ? `: ${event.error}` : '';
  if (event.kind === 'delivered') return `${time} delivered ${event.messageId} ${target}${answer}${tries}`;
  if (event.kind === 'retry') {
    return `${time} retry     ${event.messageId} ${target}${error}${tries}, next in ${event.delaySeconds} s`;
  }
  return `${time} failed    ${event.messageId} ${target} ${event.reason}${error}${tries}, in the delivery DLQ`;
}

/** An SMTP command refused: `12:00:01 refused   550 5.7.1 Relaying denied for <a@b.test> (from 127.0.0.1)`. */
function formatRefusal(record: Attributes): string {
  const time = (str(record.timestamp) ?? new Date().toISOString()).slice(11, 19);
  return `${time} refused   ${record.reply} (from ${record.remoteAddress})`;
}

/** Any other warning or error, in one line: `12:00:01 WARN parse: recipients no longer … (01J…)`. */
function formatOther(record: Attributes): string {
  const time = (str(record.timestamp) ?? new Date().toISOString()).slice(11, 19);
  const about = str(record.messageId) ? ` (${record.messageId})` : '';
  const error = record.error === undefined ? '' : `: ${describeError(record.error)}`;
  return `${time} ${record.level} ${record.service}: ${record.message}${about}${error}`;
}

function describeError(error: unknown): string {
  if (typeof error === 'string') return error;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(error);
}

/** Where the local runtime's log records go. */
export interface ConsoleSink {
  /** JSON lines as in AWS (`--json-logs`), or one human line per message event and per warning. */
  readonly json: boolean;
  /** Prints a human line. @default console.log */
  readonly print?: (line: string) => void;
  /** Appends each message event as a JSON line here (`mailbridge tail` follows it). */
  readonly eventsFile?: string;
}

/** The JSON lines' threshold: POWERTOOLS_LOG_LEVEL as the parts read it in AWS. */
function jsonThreshold(): number {
  const name = (process.env.POWERTOOLS_LOG_LEVEL ?? 'INFO').toUpperCase();
  return LogLevelThreshold[name as keyof typeof LogLevelThreshold] ?? LogLevelThreshold.INFO;
}

/**
 * A Powertools logger for the local runtime (subclassed where Powertools invites it: `printLog`
 * and `createLogger`). It always sees INFO and above, whatever POWERTOOLS_LOG_LEVEL says, so the
 * message events are recorded; what it prints is either the JSON lines AWS would get (at the
 * level POWERTOOLS_LOG_LEVEL allows) or one human line per message event and per warning.
 */
export class RuntimeLogger extends Logger {
  readonly #sink: ConsoleSink;

  constructor(options: ConstructorOptions, sink: ConsoleSink) {
    super({ ...options, logLevel: jsonThreshold() < LogLevelThreshold.INFO ? undefined : 'INFO' });
    this.#sink = sink;
  }

  protected override createLogger(options?: ConstructorOptions): RuntimeLogger {
    return new RuntimeLogger(options ?? {}, this.#sink);
  }

  protected override printLog(logLevel: number, log: LogItem): void {
    const record = log.getAttributes() as Attributes;
    const event = messageEventOf(record);
    if (event && this.#sink.eventsFile) appendMessageEvent(this.#sink.eventsFile, event);
    if (this.#sink.json) {
      if (logLevel >= jsonThreshold()) super.printLog(logLevel, log);
      return;
    }
    const print = this.#sink.print ?? console.log;
    if (event) print(formatMessageEvent(event));
    else if (logLevel >= LogLevelThreshold.WARN) print(formatOther(record));
    else if (record.service === 'listener' && record.message === 'refused') print(formatRefusal(record));
  }
}

/** A logger per part of the local runtime, all writing to one sink. */
export function runtimeLoggers(sink: ConsoleSink): (serviceName: string) => Logger {
  return (serviceName) => new RuntimeLogger({ serviceName }, sink);
}
