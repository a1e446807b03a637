import { basename } from 'node:path';
import type { Command } from 'commander';
import nodemailer from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import MailComposer from 'nodemailer/lib/mail-composer';
import { DEV_DKIM, dkimSignMessage } from '../dev/auth/dev-dkim.ts';
import { CliError, collect, positiveInt, printJson, startProgress, UsageError } from './output.ts';

interface SendOptions {
  server: string;
  tls?: boolean;
  starttls?: boolean;
  auth?: string;
  insecure?: boolean;
  from: string;
  to?: string[];
  subject: string;
  body: string;
  attach: string[];
  header: string[];
  count: number;
  concurrency: number;
  dkim?: boolean;
  json?: boolean;
}

/** What the server answered for one message. */
interface SendResult {
  readonly index: number;
  readonly ok: boolean;
  /** The server's final reply, e.g. `250 2.0.0 queued as 01J…`, or the error. */
  readonly response: string;
  /** The id in `queued as <id>`, when the server gave one. */
  readonly queuedAs: string | null;
}

function parseServer(value: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535)
    throw new UsageError(`--server: expected host:port, got "${value}"`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function parseHeaders(values: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const value of values) {
    const colon = value.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header: expected "Name: value", got "${value}"`);
    headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
  }
  return headers;
}

function parseAuth(value: string | undefined): { user: string; pass: string } | undefined {
  if (value === undefined) return undefined;
  const colon = value.indexOf(':');
  if (colon <= 0) throw new UsageError('--auth: expected user:password');
  return { user: value.slice(0, colon), pass: value.slice(colon + 1) };
}

function printResult(result: SendResult, count: number): void {
  console.log(`${result.index + 1}/${count} ${result.response}`);
}

/** Routed to the dev inbox by the default local config. */
const DEFAULT_TO = 'test@example.test';

const LOOPBACK = /^(?:127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** The message as `--dkim` sends it: built, then signed with the dev key; sent as is. */
async function dkimSigned(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return dkimSignMessage(await new MailComposer(mail).compile().build());
}

/**
 * The sender's address, and a warning when `--dkim` cannot make DMARC pass for it: the signing
 * domain must be the From domain (RFC 7489 §3.1.1; the dev zone asks for strict alignment).
 */
function dkimSender(from: string): { address: string; warning?: string } {
  const address = addressparser(from, { flatten: true })[0]?.address || from;
  const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  if (domain === DEV_DKIM.signingDomain) return { address };
  return {
    address,
    warning: `--dkim signs for ${DEV_DKIM.signingDomain} (the dev key), not ${domain}: DMARC will not pass on DKIM`,
  };
}

async function send(options: SendOptions & { to: string[] }): Promise<SendResult[]> {
  if (options.tls && options.starttls) throw new UsageError('--tls and --starttls exclude each other');
  const { host, port } = parseServer(options.server);
  const auth = parseAuth(options.auth);
  const headers = parseHeaders(options.header);
  const signer = options.dkim ? dkimSender(options.from) : undefined;
  if (signer?.warning) console.error(`warning: ${signer.warning}`);
  const transport = nodemailer.createTransport({
    host,
    port,
    secure: options.tls === true,
    requireTLS: options.starttls === true,
    pool: true,
    maxConnections: options.concurrency,
    // A loopback server is the local runtime, whose certificate is self-signed.
    tls: { rejectUnauthorized: !options.insecure && !LOOPBACK.test(host) },
    ...(auth ? { auth } : {}),
  });
  const progress = startProgress(options.count, 'send', { json: options.json === true });
  const results: SendResult[] = [];
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < options.count; index = next++) {
      const suffix = options.count > 1 ? ` (${index + 1}/${options.count})` : '';
      try {
        const mail = {
          from: options.from,
          to: options.to,
          subject: `${options.subject}${suffix}`,
          text: options.body,
          headers,
          attachments: options.attach.map((path) => ({ filename: basename(path), path })),
        };
        const info = await transport.sendMail(
          signer ? { envelope: { from: signer.address, to: options.to }, raw: await dkimSigned(mail) } : mail,
        );
        const response = String(info.response);
        results[index] = {
          index,
          ok: true,
          response,
          queuedAs: /queued as (\S+)/.exec(response)?.[1] ?? null,
        };
      } catch (error) {
        const { response, message } = error as { response?: string; message: string };
        results[index] = { index, ok: false, response: response ?? message, queuedAs: null };
      }
      progress.tick();
      if (!options.json && !progress.drawing) printResult(results[index]!, options.count);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.count) }, worker));
  } finally {
    progress.stop();
    transport.close();
  }
  if (options.json) printJson(results);
  else if (progress.drawing) for (const result of results) printResult(result, options.count);
  return results;
}

/** `mailbridge send`: test mail to any SMTP port, so nobody needs swaks. */
export function registerSend(program: Command): void {
  program
    .command('send')
    .description("send a test mail and print the server's reply (the `queued as <id>` line) per message")
    .option('--server <host:port>', 'SMTP server', '127.0.0.1:2525')
    .option('--tls', 'implicit TLS from the first byte (port 465 style)')
    .option('--starttls', 'require STARTTLS (otherwise used when offered)')
    .option('--auth <user:password>', 'SMTP AUTH (PLAIN/LOGIN)')
    .option('--insecure', "don't verify the server certificate (never verified for loopback servers)")
    .option('--from <address>', 'sender', 'sender@example.com')
    .option('--to <address>', `recipient, repeatable (default: ${DEFAULT_TO})`, collect)
    .option('--subject <text>', 'subject', 'mailbridge test')
    .option('--body <text>', 'plain-text body', 'Sent by mailbridge send.')
    .option('--attach <file>', 'attachment, repeatable', collect, [])
    .option('--header <"Name: value">', 'extra header, repeatable', collect, [])
    .option('--count <n>', 'copies to send', positiveInt, 1)
    .option('--concurrency <n>', 'connections in parallel', positiveInt, 1)
    .option(
      '--dkim',
      `DKIM-sign with the dev key (d=${DEV_DKIM.signingDomain}, s=${DEV_DKIM.selector}), which the default config's DNS zone publishes: from @${DEV_DKIM.signingDomain}, dkim and dmarc say "pass"`,
    )
    .option('--json', 'print JSON')
    .action(async (options: SendOptions) => {
      const results = await send({ ...options, to: options.to ?? [DEFAULT_TO] });
      const failed = results.filter((result) => !result.ok).length;
      if (failed > 0) throw new CliError(`${failed} of ${results.length} messages not accepted`);
    });
}
