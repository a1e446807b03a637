import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import {
  DEV_DNS_ZONE_FILE,
  describeRuntime,
  dkimSignMessage,
  type LocalRuntime,
  startLocalRuntime,
} from '../../dev/index.ts';
import { loadDnsZone } from '../../functions/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { noDns } from '../../harness/dns-zone.ts';
import { runCli } from './helpers.ts';

const ALL_PORTS_FREE = { smtp: 0, submission: 0, smtps: 0, inbox: 0, health: 0, emulator: 0, api: 0 };

interface AuthVerdicts {
  spf: { result: string; domain: string };
  dkim: { result: string; domain: string; selector: string }[];
  dmarc: { result: string; policy: string | null; domain: string };
}

/** The SMTP address of the runtime's MX-style listener, as `--server` takes it. */
function mxOf(runtime: LocalRuntime): string {
  return `127.0.0.1:${runtime.listener.listeners.find((listener) => listener.mode === 'mx')!.port}`;
}

/** `mailbridge send …args` to the runtime: the message id the listener answered with. */
async function send(runtime: LocalRuntime, args: readonly string[]): Promise<string> {
  const result = await runCli(['send', '--server', mxOf(runtime), '--json', ...args]);
  assert.equal(result.code, 0, result.stderr + result.stdout);
  const [sent] = JSON.parse(result.stdout) as { queuedAs: string }[];
  return sent!.queuedAs;
}

/** The auth verdicts of the webhook the dev inbox received for message `id`, polled until it arrives. */
async function verdictsOf(runtime: LocalRuntime, id: string): Promise<AuthVerdicts> {
  for (let waited = 0; waited < 20_000; waited += 100) {
    for (const entry of runtime.inbox.entries) {
      const payload = JSON.parse(entry.body) as { id: string; auth: AuthVerdicts };
      if (payload.id === id) {
        assert.equal(entry.signatureValid, true);
        return payload.auth;
      }
    }
    await sleep(100);
  }
  throw new Error(`no webhook for ${id} in the dev inbox`);
}

describe('mailbridge send --dkim against the default dev config and its DNS zone', () => {
  let runtime: LocalRuntime;

  before(async () => {
    // The newcomer's `npm start`, on free ports; names outside the zone get no answer, as offline.
    runtime = await startLocalRuntime({ ports: ALL_PORTS_FREE, resolver: noDns, pollWaitSeconds: 1 });
  });

  after(() => runtime?.close());

  it('says at start which zone file answers', () => {
    assert.ok(
      describeRuntime(runtime).includes(
        "sender auth DNS: dev/auth/zone.yaml for the names it has (read again when it changes), the system's for the rest (offline: temperror)",
      ),
    );
  });

  it('signed mail from example.com passes SPF, DKIM and DMARC', async () => {
    const id = await send(runtime, ['--dkim', '--subject', 'signed by the dev key']);
    const auth = await verdictsOf(runtime, id);
    assert.deepEqual(auth.spf, { result: 'pass', domain: 'example.com' });
    assert.deepEqual(
      auth.dkim.map(({ result, domain, selector }) => ({ result, domain, selector })),
      [{ result: 'pass', domain: 'example.com', selector: 'mailbridge-dev' }],
    );
    assert.equal(auth.dmarc.result, 'pass');
    assert.equal(auth.dmarc.domain, 'example.com');
  });

  it('unsigned mail from example.com has no DKIM and passes DMARC on SPF, which allows loopback', async () => {
    const auth = await verdictsOf(runtime, await send(runtime, ['--subject', 'unsigned']));
    assert.deepEqual(auth.spf, { result: 'pass', domain: 'example.com' });
    assert.deepEqual(auth.dkim, []);
    assert.equal(auth.dmarc.result, 'pass');
  });

  it('mail from forged.example, whose SPF allows no one, fails SPF and DMARC', async () => {
    const id = await send(runtime, ['--from', 'someone@forged.example', '--subject', 'forged']);
    const auth = await verdictsOf(runtime, id);
    assert.deepEqual(auth.spf, { result: 'fail', domain: 'forged.example' });
    assert.deepEqual(auth.dkim, []);
    assert.equal(auth.dmarc.result, 'fail');
    assert.equal(auth.dmarc.policy, 'reject');
  });

  it('--dkim with a From the dev key cannot sign for says so, and still sends', async () => {
    const result = await runCli([
      'send',
      '--server',
      mxOf(runtime),
      '--dkim',
      '--from',
      'ann@elsewhere.test',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /--dkim signs for example\.com \(the dev key\), not elsewhere\.test/);
    assert.match(result.stdout, /^1\/1 250 2\.0\.0 queued as /);
  });
});

describe('a dev DNS zone of its own: SPF that leaves out the client, DMARC p=reject', () => {
  let dir: string;
  let runtime: LocalRuntime;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-zone-'));
    // The dev zone (its DKIM key, its DMARC), but example.com's SPF allows only 192.0.2.0/24: the
    // runtime's client, 127.0.0.1, is not in the record and `-all` makes it fail.
    const zone = {
      ...(await loadDnsZone(DEV_DNS_ZONE_FILE)),
      'example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] },
    };
    await writeFile(join(dir, 'zone.yaml'), stringify(zone));
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'spf-strict',
          match: ['strict@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: 'whsec_c3BmLXN0cmljdC10ZXN0LXNlY3JldA==' },
          filtering: { spf: { fail: 'refuse' } },
        },
        {
          id: 'dev-inbox',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: 'whsec_em9uZS10ZXN0LXNlY3JldA==' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      // Relative to the config file.
      dev: { dnsZone: 'zone.yaml' },
    });
    runtime = await startLocalRuntime({
      configFile,
      ports: ALL_PORTS_FREE,
      resolver: noDns,
      pollWaitSeconds: 1,
    });
  });

  after(async () => {
    await runtime?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('signed: SPF fails, DKIM passes, and DMARC passes on DKIM alone', async () => {
    const auth = await verdictsOf(runtime, await send(runtime, ['--dkim', '--subject', 'same message']));
    assert.deepEqual(auth.spf, { result: 'fail', domain: 'example.com' });
    assert.deepEqual(
      auth.dkim.map(({ result, domain }) => ({ result, domain })),
      [{ result: 'pass', domain: 'example.com' }],
    );
    assert.equal(auth.dmarc.result, 'pass');
  });

  it('the same message unsigned: no DKIM, and DMARC fails with the zone policy reject', async () => {
    const auth = await verdictsOf(runtime, await send(runtime, ['--subject', 'same message']));
    assert.equal(auth.spf.result, 'fail');
    assert.deepEqual(auth.dkim, []);
    assert.deepEqual(
      { result: auth.dmarc.result, policy: auth.dmarc.policy },
      { result: 'fail', policy: 'reject' },
    );
  });

  it('signed, then changed on the way: DKIM does not pass, and DMARC fails', async () => {
    const signed = (
      await dkimSignMessage(
        [
          'From: sender@example.com',
          'To: test@example.test',
          'Subject: Invoice 1',
          'Message-ID: <tampered@example.com>',
          'Date: Fri, 04 Dec 2026 10:00:00 +0000',
          '',
          'Pay invoice 1 to account A.',
          '',
        ].join('\r\n'),
      )
    ).toString();
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: Number(mxOf(runtime).split(':')[1]),
      // The runtime's certificate is self-signed; what is checked here is the message, not TLS.
      ignoreTLS: true,
    });
    const sendRaw = async (raw: string) => {
      const info = await transport.sendMail({
        envelope: { from: 'sender@example.com', to: ['test@example.test'] },
        raw,
      });
      return verdictsOf(runtime, /queued as (\S+)/.exec(String(info.response))![1]!);
    };
    try {
      // A signed header changed: the signature itself does not verify.
      const header = await sendRaw(signed.replace('Subject: Invoice 1', 'Subject: Invoice 2'));
      assert.deepEqual(
        header.dkim.map(({ result }) => result),
        ['fail'],
      );
      assert.equal(header.dmarc.result, 'fail');
      // The body changed: "body hash did not verify", which mailauth's lenient mode (the parse
      // function's) reports as neutral; either way not a pass, so DMARC fails.
      const body = await sendRaw(signed.replace('account A', 'account B'));
      assert.deepEqual(
        body.dkim.map(({ result }) => result),
        ['neutral'],
      );
      assert.equal(body.dmarc.result, 'fail');
    } finally {
      transport.close();
    }
  });

  it("the listener's SPF check at MAIL FROM reads the zone too: a route refusing SPF fail refuses", async () => {
    const result = await runCli(['send', '--server', mxOf(runtime), '--to', 'strict@example.test']);
    assert.equal(result.code, 1);
    assert.match(result.stdout + result.stderr, /550 5\.7\.23/);
  });
});

describe('the dev DNS zone in the config', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-bad-zone-'));
  });

  after(() => rm(dir, { recursive: true, force: true }));

  /** Why the runtime would not start with a config naming `dnsZone` (a runtime that starts is closed). */
  async function startError(dnsZone: string): Promise<Error> {
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'r',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:9/hook'],
          secret: { value: 'whsec_em9uZS10ZXN0LXNlY3JldA==' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      dev: { dnsZone },
    });
    const error = await startLocalRuntime({ configFile, ports: ALL_PORTS_FREE, resolver: noDns }).then(
      async (runtime) => {
        await runtime.close();
        return undefined;
      },
      (error: Error) => error,
    );
    assert.ok(error, `the runtime started with the zone ${dnsZone}`);
    assert.equal(error.name, 'ConfigError', error.stack);
    return error;
  }

  it('a bad zone file stops the start, naming the file, the line and the entry', async () => {
    await writeFile(
      join(dir, 'bad-zone.yaml'),
      [
        '# a zone with one mistake',
        'example.com:',
        '  TXT: ["v=spf1 -all"]',
        'bad.example:',
        '  TXT: "v=spf1 -all"',
        '',
      ].join('\n'),
    );
    assert.match(
      (await startError('bad-zone.yaml')).message,
      /bad-zone\.yaml \(dev\.dnsZone of .*mailbridge\.json\):\n {2}- line 5: bad\.example TXT: .*expected array/,
    );
  });

  it('a zone file that is not YAML, or is missing, stops the start too', async () => {
    await writeFile(join(dir, 'broken.yaml'), 'example.com:\n  TXT: ["v=spf1 -all"\n');
    assert.match(
      (await startError('broken.yaml')).message,
      /broken\.yaml \(dev\.dnsZone of .*\):\n {2}- line \d: not YAML: /,
    );
    assert.match(
      (await startError('nowhere.yaml')).message,
      /nowhere\.yaml \(dev\.dnsZone of .*\):\n {2}- \(file\): cannot read: ENOENT/,
    );
  });
});
