import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { signWebhook } from '../../core/index.ts';
import { runCli, startCli } from './helpers.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const OTHER = 'whsec_b3RoZXItc2VjcmV0LW9mLXRoZS10ZXN0';
const BODY = '{"type":"email.received","version":1,"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV"}';

function captured(options: { ageSeconds?: number; body?: string; secret?: string } = {}): string {
  const timestamp = Math.floor(Date.now() / 1000) - (options.ageSeconds ?? 0);
  const headers = signWebhook('msg_test', timestamp, BODY, [options.secret ?? SECRET]);
  return JSON.stringify({
    headers: { ...headers, 'content-type': 'application/json' },
    body: options.body ?? BODY,
  });
}

describe('mailbridge verify', () => {
  it('accepts a valid capture (exit 0) and says why an invalid one fails (exit 1)', async () => {
    const [valid, tampered, wrongSecret, old, oldTolerated, rotated] = await Promise.all([
      runCli(['verify', '--secret', SECRET], { input: captured() }),
      runCli(['verify', '--secret', SECRET, '--json'], { input: captured({ body: BODY.replace('1', '2') }) }),
      runCli(['verify', '--secret', OTHER], { input: captured() }),
      runCli(['verify', '--secret', SECRET, '--json'], { input: captured({ ageSeconds: 600 }) }),
      runCli(['verify', '--secret', SECRET, '--tolerance', '3600'], { input: captured({ ageSeconds: 600 }) }),
      runCli(['verify', '--secret', OTHER, '--secret', SECRET], { input: captured() }),
    ]);
    assert.equal(valid.code, 0, valid.stderr);
    assert.match(valid.stdout, /^valid: webhook-id msg_test/);
    assert.equal(tampered.code, 1);
    assert.deepEqual(JSON.parse(tampered.stdout), {
      valid: false,
      webhookId: 'msg_test',
      reason: 'no signature matches: wrong secret, or the body or headers were changed',
    });
    assert.equal(wrongSecret.code, 1);
    assert.equal(old.code, 1);
    assert.match(
      (JSON.parse(old.stdout) as { reason: string }).reason,
      /^timestamp 6\d\d s old, tolerance 300 s/,
    );
    assert.equal(oldTolerated.code, 0, oldTolerated.stdout);
    assert.equal(rotated.code, 0, rotated.stdout);
  });

  it('reads a raw HTTP request too', async () => {
    const { headers, body } = JSON.parse(captured()) as { headers: Record<string, string>; body: string };
    const request = [
      'POST /webhooks HTTP/1.1',
      'Host: receiver.example',
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      '',
      body,
    ].join('\r\n');
    const result = await runCli(['verify', '--secret', SECRET], { input: request });
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  it('exits 2 on input or a secret it cannot use', async () => {
    const [garbage, badSecret, noSecret] = await Promise.all([
      runCli(['verify', '--secret', SECRET], { input: 'not a webhook' }),
      runCli(['verify', '--secret', 'hunter2'], { input: captured() }),
      runCli(['verify'], { input: captured() }),
    ]);
    assert.equal(garbage.code, 2);
    assert.equal(badSecret.code, 2);
    assert.equal(noSecret.code, 2);
  });
});

describe('mailbridge routes check', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-routes-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('shows the route and endpoints of each address, or the SMTP reply it gets', async () => {
    const ok = await runCli(['routes', 'check', 'someone@example.test', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    const result = JSON.parse(ok.stdout) as {
      valid: boolean;
      api: unknown;
      apiError: string;
      addresses: unknown[];
    };
    assert.equal(result.valid, true);
    assert.equal(result.api, null);
    assert.match(result.apiError, /^no API: set MAILBRIDGE_API_URL/);
    assert.deepEqual(result.addresses, [
      {
        address: 'someone@example.test',
        accepted: true,
        route: 'dev-inbox',
        endpoints: ['http://127.0.0.1:8025/webhooks'],
      },
    ]);
    const refused = await runCli(['routes', 'check', 'a@example.test', 'b@elsewhere.test']);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /^checked the config only \(no API: set MAILBRIDGE_API_URL/m);
    assert.match(refused.stdout, /a@example\.test → route dev-inbox → http:\/\/127\.0\.0\.1:8025\/webhooks/);
    assert.match(refused.stdout, /b@elsewhere\.test → 550 5\.7\.1 Relaying denied for <b@elsewhere\.test>/);
  });

  it('checks the config alone, saying why, when the API named cannot be reached', async () => {
    const result = await runCli(['routes', 'check', 'a@example.test'], {
      env: { MAILBRIDGE_API_URL: 'http://127.0.0.1:1', MAILBRIDGE_API_KEY: `mbk_${'k'.repeat(43)}` },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^checked the config only \(cannot reach the API at http:\/\/127\.0\.0\.1:1: .+: is mailbridge dev running/m,
    );
    assert.match(result.stdout, /^a@example\.test → route dev-inbox/m);
  });

  it('answers 550 5.1.1 for our domain without a matching route', async () => {
    const file = join(dir, 'narrow.yaml');
    await writeFile(
      file,
      [
        'domains: [example.test]',
        'routes: [{ id: support, match: ["support@example.test"], endpoints: ["http://127.0.0.1:9/x"], secret: { value: whsec_dGVzdA== } }]',
        'listeners: [{ port: 0, mode: mx }]',
        'health: { port: 0 }',
      ].join('\n'),
    );
    const result = await runCli(['routes', 'check', '--config', file, 'sales@example.test', '--json']);
    assert.equal(result.code, 1);
    const { addresses } = JSON.parse(result.stdout) as { addresses: { reply: string }[] };
    assert.equal(addresses[0]!.reply, '550 5.1.1 Mailbox <sales@example.test> does not exist');
  });

  it('prints every issue of an invalid config and exits 1', async () => {
    const result = await runCli(['routes', 'check', '--runtime', 'aws']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /routes\[0\]\.endpoints\[0\]: must be https:\/\//);
    assert.match(result.stderr, /tls\.source: self-signed is for local runs only/);
    const json = await runCli(['routes', 'check', '--runtime', 'aws', '--json']);
    const report = JSON.parse(json.stdout) as { valid: boolean; issues: string[] };
    assert.equal(report.valid, false);
    assert.ok(report.issues.length >= 3);
  });
});

describe('mailbridge dev', () => {
  it('prints the banner, and drains and exits 0 on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailbridge-dev-'));
    try {
      const ports = Object.fromEntries(
        ['SMTP', 'SUBMISSION', 'SMTPS', 'INBOX', 'HEALTH', 'EMULATOR'].map((name) => [
          `MAILBRIDGE_${name}_PORT`,
          '0',
        ]),
      );
      const dev = await startCli(['dev', '--data-dir', dir], 'signing secret: whsec_', { env: ports });
      assert.match(dev.stdout(), /^SMTP, MX-style \(STARTTLS offered, no AUTH\): 127\.0\.0\.1:\d+$/m);
      dev.kill('SIGTERM');
      const result = await dev.done;
      assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 naming the bad field of a config', async () => {
    const result = await runCli(['dev', '--config', join(import.meta.dirname, 'missing.yaml')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid config .*missing\.yaml/);
  });
});

describe('mailbridge send --help', () => {
  it('shows the defaults the command uses', async () => {
    const help = await runCli(['send', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--to <address>\s+recipient, repeatable \(default: test@example\.test\)/);
    assert.match(help.stdout, /--server <host:port>\s+SMTP server \(default: "127\.0\.0\.1:2525"\)/);
  });
});

describe('mailbridge tail without a running runtime', () => {
  it('says that none runs with that data folder, and exits 1', async () => {
    const result = await runCli(['tail', '--data-dir', join(tmpdir(), 'mailbridge-none-here')]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /no running `mailbridge dev` has its data folder at \S+mailbridge-none-here: start it \(npm start\)/,
    );
  });
});
