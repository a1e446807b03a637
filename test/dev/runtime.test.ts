import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { Webhook } from 'standardwebhooks';
import { ConfigError } from '../../core/index.ts';
import { describeRuntime, type LocalRuntime, PortsInUseError, startLocalRuntime } from '../../dev/index.ts';
import { PORT_VARIABLES } from '../../dev/runtime-state.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { noDns } from '../../harness/dns-zone.ts';
import { startWebhookReceiver } from '../../harness/webhook-receiver.ts';

const ALL_PORTS_FREE = { smtp: 0, submission: 0, smtps: 0, inbox: 0, health: 0, emulator: 0, api: 0 };

/** Sends one message to `to` through the MX port. */
async function send(port: number, to: string[]): Promise<void> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    tls: { rejectUnauthorized: false },
  });
  try {
    await transport.sendMail({ from: 'ann@sender.test', to, subject: 'console', text: 'hello' });
  } finally {
    transport.close();
  }
}

/** Every port variable of `mailbridge dev` set to 0 (any free port). */
function freePorts(): Record<string, string> {
  return Object.fromEntries(Object.values(PORT_VARIABLES).map((variable) => [variable, '0']));
}

describe('local runtime (npm start) in process', () => {
  let runtime: LocalRuntime;
  before(async () => {
    runtime = await startLocalRuntime({ ports: ALL_PORTS_FREE, resolver: noDns, pollWaitSeconds: 1 });
  });
  after(async () => {
    await runtime?.close();
  });

  it('turns a mail sent over SMTP into a validly signed webhook in the dev inbox', async () => {
    const mx = runtime.listener.listeners.find((address) => address.mode === 'mx')!;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: mx.port,
      secure: false,
      tls: { rejectUnauthorized: false },
    });
    try {
      await transport.sendMail({
        from: 'Ann Sender <ann@sender.test>',
        to: 'you+ticket42@example.test',
        subject: 'Hello <b>inbox</b>',
        text: 'Hi there',
        attachments: [{ filename: 'note.txt', content: 'attached text' }],
      });
    } finally {
      transport.close();
    }
    const [entry] = await runtime.inbox.waitFor(1, 20_000);
    assert.equal(entry!.signatureValid, true);
    const headers = {
      'webhook-id': String(entry!.headers['webhook-id']),
      'webhook-timestamp': String(entry!.headers['webhook-timestamp']),
      'webhook-signature': String(entry!.headers['webhook-signature']),
    };
    const payload = new Webhook(runtime.signingSecrets[0]!).verify(entry!.body, headers) as {
      type: string;
      route: { id: string; recipients: string[] };
      message: {
        subject: string;
        from: { address: string }[];
        text: string;
        mailboxHash: string;
        attachments: { filename: string; size: number }[];
      };
    };
    assert.equal(payload.type, 'email.received');
    assert.equal(payload.route.id, 'dev-inbox');
    assert.deepEqual(payload.route.recipients, ['you+ticket42@example.test']);
    assert.equal(payload.message.subject, 'Hello <b>inbox</b>');
    assert.equal(payload.message.from[0]!.address, 'ann@sender.test');
    assert.equal(payload.message.text.trim(), 'Hi there');
    assert.equal(payload.message.mailboxHash, 'ticket42');
    assert.deepEqual(
      payload.message.attachments.map(({ filename, size }) => ({ filename, size })),
      [{ filename: 'note.txt', size: 13 }],
    );
    const page = await (await fetch(`${runtime.inbox.url}/`)).text();
    assert.ok(page.includes('Hello &lt;b&gt;inbox&lt;/b&gt;'));
    assert.ok(page.includes('<span class="ok">valid</span>'));
    // The delivery record is deleted just after the webhook's 2xx: every queue, DLQs included, drains.
    let pending = Number.POSITIVE_INFINITY;
    for (let tries = 0; tries < 50 && pending > 0; tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      const queues = (await (await fetch(`${runtime.emulator.endpoint}/_fauxqs/queues`)).json()) as {
        approximateMessageCount: number;
        approximateInflightCount: number;
      }[];
      pending = queues.reduce((sum, q) => sum + q.approximateMessageCount + q.approximateInflightCount, 0);
    }
    assert.equal(pending, 0);
  });

  it('prints one banner line per local endpoint with the bound addresses, the credentials and the secret', () => {
    const lines = describeRuntime(runtime);
    const mx = runtime.listener.listeners.find((address) => address.mode === 'mx')!;
    assert.ok(lines.includes(`SMTP, MX-style (STARTTLS offered, no AUTH): 127.0.0.1:${mx.port}`));
    assert.equal(
      lines.filter((line) => line.startsWith('submission (STARTTLS then AUTH): 127.0.0.1:')).length,
      1,
    );
    assert.equal(lines.filter((line) => line.startsWith('implicit TLS (AUTH): 127.0.0.1:')).length, 1);
    assert.ok(lines.includes(`dev inbox page: ${runtime.inbox.url}/`));
    assert.ok(lines.includes(`dev inbox API: GET ${runtime.inbox.url}/api/webhooks`));
    assert.ok(lines.some((line) => /^listener health: GET http:\/\/127\.0\.0\.1:\d+\/healthz$/.test(line)));
    assert.ok(lines.includes(`API: ${runtime.api.url}/v1`));
    assert.ok(lines.includes(`API key: ${runtime.api.key}`));
    assert.match(runtime.api.key, /^mbk_[\w-]{43}$/);
    assert.ok(lines.includes('SMTP AUTH user: dev password: mailbridge-dev'));
    assert.ok(lines.includes('signing secret: whsec_bWFpbGJyaWRnZS1sb2NhbC1kZXYtc2VjcmV0'));
    assert.ok(
      lines.some((line) => line.startsWith('content scanners: off, verdicts "unavailable" (to scan')),
    );
  });

  it('a route made through the API that points at the dev inbox: its webhooks show as validly signed', async () => {
    const created = await fetch(`${runtime.api.url}/v1/routes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${runtime.api.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'tour',
        match: ['tour@example.test'],
        endpoints: [`${runtime.inbox.url}/webhooks`],
      }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const mx = runtime.listener.listeners.find((address) => address.mode === 'mx')!;
    // `*@example.test` (the config's dev-inbox route) takes the address until the API route is in force.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const before = runtime.inbox.received;
      await send(mx.port, ['tour@example.test']);
      const [entry] = (await runtime.inbox.waitFor(before + 1, 20_000)).slice(-1);
      if ((JSON.parse(entry!.body) as { route: { id: string } }).route.id === 'tour') {
        assert.equal(entry!.signatureValid, true);
        break;
      }
      assert.ok(Date.now() < deadline, 'the API route is in force within 15 s');
      await sleep(500);
    }
  });
});

describe('local runtime start-up', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-runtime-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a bad config naming the field, before anything listens', async () => {
    const text = await readFile('dev/mailbridge.yaml', 'utf8');
    const file = join(dir, 'bad.yaml');
    await writeFile(file, text.replace('http://127.0.0.1:8025/webhooks', 'http://10.1.2.3/webhooks'));
    await assert.rejects(startLocalRuntime({ configFile: file, ports: ALL_PORTS_FREE }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues, [
        'routes[0].endpoints[0]: must be https:// (plain http:// only for loopback in local runs)',
      ]);
      return true;
    });
  });

  it('checks every port first and names each taken one with its variable, in one message', async () => {
    const taken = await Promise.all(
      [0, 1].map(async () => {
        const server = createServer().listen(0, '127.0.0.1');
        await once(server, 'listening');
        return server;
      }),
    );
    const [smtp, inbox] = taken.map((server) => (server.address() as AddressInfo).port);
    try {
      await assert.rejects(startLocalRuntime({ ports: { ...ALL_PORTS_FREE, smtp, inbox } }), (error) => {
        assert.ok(error instanceof PortsInUseError, String(error));
        assert.equal(
          error.message,
          [
            'cannot start: ports taken (is another `mailbridge dev` running?)',
            `  127.0.0.1:${smtp} (SMTP, MX-style, MAILBRIDGE_SMTP_PORT): in use`,
            `  127.0.0.1:${inbox} (dev inbox, MAILBRIDGE_INBOX_PORT): in use`,
            'Stop the other one, or set these variables to free ports (0 picks any).',
          ].join('\n'),
        );
        return true;
      });
    } finally {
      for (const server of taken) server.close();
    }
  });

  it('dev/example.env names every port variable', async () => {
    const example = await readFile(new URL('../../dev/example.env', import.meta.url), 'utf8');
    const named = [...example.matchAll(/^# (MAILBRIDGE_\w+_PORT)=/gm)].map((match) => match[1]);
    assert.deepEqual(named.sort(), Object.values(PORT_VARIABLES).sort());
  });

  it('npm start prints one line per message accepted, delivered, retried or failed, not JSON', async () => {
    const failing = await startWebhookReceiver({ secret: 'whsec_ZmFpbGluZw==' });
    failing.down = true;
    const configFile = await writeConfigFile(dir, {
      domains: ['example.test'],
      routes: [
        {
          id: 'failing',
          match: ['fails@example.test'],
          endpoints: [failing.url],
          secret: { value: 'whsec_ZmFpbGluZw==' },
          retrySchedule: ['1s'],
        },
        {
          id: 'dev-inbox',
          match: ['*@example.test'],
          endpoints: ['http://127.0.0.1:8025/webhooks'],
          secret: { value: 'whsec_ZGV2' },
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
    });
    const child = spawn(process.execPath, ['cli/main.js', 'dev', '--config', configFile], {
      env: { ...process.env, ...freePorts(), MAILBRIDGE_DATA_DIR: join(dir, 'console') },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    const exited = once(child, 'exit');
    const lines: string[] = [];
    try {
      const input = createInterface({ input: child.stdout });
      let sent: Promise<unknown> | undefined;
      for await (const line of input) {
        lines.push(line);
        const mx = /^SMTP, MX-style .*: 127\.0\.0\.1:(\d+)$/.exec(line);
        if (mx) sent = send(Number(mx[1]), ['ok@example.test', 'fails@example.test']);
        if (/ failed {4}/.test(line)) break;
      }
      await sent;
    } finally {
      child.kill('SIGTERM');
      await exited;
      await failing.close();
    }
    const events = lines.filter((line) => /^\d\d:\d\d:\d\d /.test(line));
    assert.deepEqual(
      events.map((line) => line.split(/ +/)[1]),
      ['accepted', 'delivered', 'retry', 'failed'],
      lines.join('\n'),
    );
    assert.match(
      events[1]!,
      /delivered \w{26} → route dev-inbox http:\/\/127\.0\.0\.1:\d+\/webhooks HTTP 204 \(try 1\)$/,
    );
    assert.match(events[2]!, /retry {5}\w{26} → route failing \S+: HTTP 503.* \(try 1\), next in 1 s$/);
    assert.match(
      events[3]!,
      /failed {4}\w{26} → route failing \S+ exhausted: HTTP 503.* \(try 2\), in the delivery DLQ$/,
    );
    assert.ok(!lines.some((line) => line.startsWith('{')), 'no JSON log or EMF line');
  });

  it('npm start prints the banner the README and docs/cli.md show, then exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, ['cli/main.js', 'dev'], {
      env: { ...process.env, ...freePorts(), MAILBRIDGE_DATA_DIR: join(dir, 'data') },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Ends the read loop below in seconds if the banner never comes.
      timeout: 60_000,
    });
    const exited = once(child, 'exit');
    const lines: string[] = [];
    for await (const line of createInterface({ input: child.stdout })) {
      lines.push(line);
      if (line.startsWith('one line per message')) break;
    }
    child.stdout.resume();
    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
    assert.ok(lines.some((line) => line.startsWith('signing secret: whsec_')));
    // The samples were taken on the default ports and data folder; this run has its own.
    const general = (line: string) =>
      line
        .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT')
        .replace(/kept in \S+$/, 'kept in DATA')
        .replace(/mbk_[\w-]{43}/, 'mbk_KEY');
    for (const doc of ['README.md', 'docs/cli.md']) {
      const text = await readFile(doc, 'utf8');
      const start = text.indexOf('\nSMTP, MX-style');
      const end = text.indexOf('\n', text.indexOf('\none line per message', start) + 1);
      assert.ok(start !== -1 && end > start, `${doc} shows the banner`);
      assert.deepEqual(
        text
          .slice(start + 1, end)
          .split('\n')
          .map(general),
        lines.map(general),
        doc,
      );
    }
  });

  it('npm start -- --json-logs prints the JSON logs and EMF metrics of AWS instead', async () => {
    const child = spawn(process.execPath, ['cli/main.js', 'dev', '--json-logs'], {
      env: {
        ...process.env,
        ...freePorts(),
        MAILBRIDGE_DATA_DIR: join(dir, 'json-logs'),
        POWERTOOLS_LOG_LEVEL: 'INFO',
        POWERTOOLS_METRICS_DISABLED: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    const exited = once(child, 'exit');
    const json: Record<string, unknown>[] = [];
    let sent: Promise<void> | undefined;
    try {
      for await (const line of createInterface({ input: child.stdout })) {
        const mx = /^SMTP, MX-style .*: 127\.0\.0\.1:(\d+)$/.exec(line);
        if (mx) sent = send(Number(mx[1]), ['json@example.test']);
        if (line.startsWith('{')) json.push(JSON.parse(line) as Record<string, unknown>);
        const delivered = json.find((record) => record.message === 'webhook delivered');
        if (delivered && json.some((record) => record.service === 'deliver' && '_aws' in record)) break;
      }
      await sent;
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    const accepted = json.find((record) => record.service === 'listener' && record.message === 'accepted');
    assert.ok(accepted, JSON.stringify(json));
    assert.equal(
      json.find((record) => record.message === 'webhook delivered')?.messageId,
      accepted.messageId,
    );
    const emf = json.find((record) => record.service === 'deliver' && '_aws' in record);
    assert.equal(emf?.delivered, 1);
  });

  it('npm start exits 1 with the bad field on a bad --config', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'version: 1\ndomains: []\n');
    const child = spawn(process.execPath, ['cli/main.js', 'dev', '--config', file], {
      env: { ...process.env, MAILBRIDGE_DATA_DIR: join(dir, 'data2') },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.match(stderr, /domains: /);
  });
});

/** A Node older than package.json's minimum on this machine (Debian's is 20), or undefined. */
function oldNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    const version = spawnSync(candidate, ['-p', 'process.versions.node'], {
      encoding: 'utf8',
    }).stdout?.trim();
    const [major = 99, minor = 0] = (version ?? '').split('.').map(Number);
    if (version && (major < 22 || (major === 22 && minor < 19))) return candidate;
  }
  return undefined;
}

describe('the first run on a machine whose Node is too old', {
  skip: oldNode() ? false : 'no Node < 22.19 here',
}, () => {
  const node = oldNode()!;
  const onlyOldNode = { ...process.env, PATH: `${dirname(node)}:/bin` };

  it('node cli/main.js says in one line which Node is needed', () => {
    const result = spawnSync(node, ['cli/main.js', '--version'], { encoding: 'utf8', env: onlyOldNode });
    assert.equal(result.status, 1);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /^mailbridge needs Node\.js 22\.19 or later \(24 recommended\), this is v\d+\./);
  });

  it('npm start runs the pipeline with the Node 24 of node_modules', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailbridge-old-node-'));
    // detached: npm does not pass signals on to the script, so the whole group is stopped.
    const child = spawn(join(dirname(node), 'npm'), ['start'], {
      env: { ...onlyOldNode, ...freePorts(), MAILBRIDGE_DATA_DIR: join(dir, 'data') },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // Ends the read loop below in seconds if the banner never comes.
    const deadline = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 60_000);
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = once(child, 'exit');
    try {
      const lines: string[] = [];
      for await (const line of createInterface({ input: child.stdout })) {
        lines.push(line);
        if (line.startsWith('signing secret: ')) break;
      }
      child.stdout.resume();
      assert.ok(
        lines.some((line) => line.startsWith('SMTP, MX-style')),
        `stdout: ${lines.join('\n')}\nstderr: ${stderr}`,
      );
    } finally {
      clearTimeout(deadline);
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
