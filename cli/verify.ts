import { timingSafeEqual } from 'node:crypto';
import { text } from 'node:stream/consumers';
import type { Command } from 'commander';
import { Webhook } from 'standardwebhooks';
import { collect, printJson, seconds, UsageError } from './output.ts';

const SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/;

interface VerifyOptions {
  secret: string[];
  tolerance: number;
  json?: boolean;
}

/** A captured webhook: the dev inbox API's `{ headers, body }`, or a raw HTTP request. */
interface Captured {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

function parseCaptured(input: string): Captured {
  const trimmed = input.trimStart();
  if (trimmed.startsWith('{')) {
    let document: { headers?: unknown; body?: unknown };
    try {
      document = JSON.parse(trimmed);
    } catch (error) {
      throw new UsageError(`input is not JSON: ${(error as Error).message}`);
    }
    if (
      typeof document.body !== 'string' ||
      typeof document.headers !== 'object' ||
      document.headers === null
    ) {
      throw new UsageError('input JSON needs "headers" (object) and "body" (the exact body as a string)');
    }
    const headers = Object.fromEntries(
      Object.entries(document.headers).map(([name, value]) => [name.toLowerCase(), String(value)]),
    );
    return { headers, body: document.body };
  }
  // RFC 9112 §2.1: start line, header fields, an empty line, then the body as sent.
  const split = /\r?\n\r?\n/.exec(input);
  if (!split || !/^[A-Z]+ \S+ HTTP\/\d/.test(trimmed)) {
    throw new UsageError('input is neither {headers, body} JSON nor an HTTP request');
  }
  const head = input.slice(0, split.index).split(/\r?\n/).slice(1);
  const headers: Record<string, string> = {};
  for (const line of head) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body: input.slice(split.index + split[0].length) };
}

/** Why a captured webhook does not verify, or undefined when it does. */
function problem(
  captured: Captured,
  secrets: readonly string[],
  toleranceSeconds: number,
  now: number,
): string | undefined {
  const id = captured.headers['webhook-id'];
  const timestamp = captured.headers['webhook-timestamp'];
  const signature = captured.headers['webhook-signature'];
  if (!id || !timestamp || !signature)
    return 'missing webhook-id, webhook-timestamp or webhook-signature header';
  if (!/^\d+$/.test(timestamp)) return `webhook-timestamp is not a number: ${timestamp}`;
  const age = Math.floor(now / 1000) - Number(timestamp);
  if (Math.abs(age) > toleranceSeconds) {
    return `timestamp ${age > 0 ? `${age} s old` : `${-age} s in the future`}, tolerance ${toleranceSeconds} s (replay protection; see --tolerance)`;
  }
  // The library's verify() fixes its tolerance at 5 minutes; sign() lets --tolerance reach old captures.
  const given = signature.split(' ').map((part) => Buffer.from(part));
  const matches = secrets.some((secret) => {
    const expected = Buffer.from(
      new Webhook(secret).sign(id, new Date(Number(timestamp) * 1000), captured.body),
    );
    return given.some(
      (candidate) => candidate.length === expected.length && timingSafeEqual(candidate, expected),
    );
  });
  return matches ? undefined : 'no signature matches: wrong secret, or the body or headers were changed';
}

/** `mailbridge verify`. */
export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description(
      'check the Standard Webhooks signature of a captured webhook read from stdin (exit 0 valid, 1 invalid)',
    )
    .requiredOption('--secret <whsec_…>', 'signing secret; repeat for several during a rotation', collect)
    .option('--tolerance <seconds>', 'how old (or early) the timestamp may be', seconds, 300)
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nInput: {"headers": {...}, "body": "..."} as the dev inbox API returns it, or a raw HTTP request.',
    )
    .action(async (options: VerifyOptions) => {
      for (const secret of options.secret) {
        if (!SECRET.test(secret))
          throw new UsageError(`--secret: not "whsec_" followed by base64: ${secret.slice(0, 8)}…`);
      }
      const captured = parseCaptured(await text(process.stdin));
      const reason = problem(captured, options.secret, options.tolerance, Date.now());
      const webhookId = captured.headers['webhook-id'] ?? null;
      if (options.json) printJson({ valid: reason === undefined, webhookId, ...(reason ? { reason } : {}) });
      else console.log(reason ? `invalid: ${reason}` : `valid: webhook-id ${webhookId}`);
      if (reason) process.exitCode = 1;
    });
}
