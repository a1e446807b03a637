import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createTransport } from 'nodemailer';
import {
  makeMessage,
  PASSWORD,
  queuedId,
  readObject,
  sha256,
  splitTraceHeader,
  USER,
  useListener,
} from './helpers.ts';

const run = promisify(execFile);

type Mode = 'plain' | 'starttls' | 'implicit-tls' | 'submission';
const MODES: readonly Mode[] = ['plain', 'starttls', 'implicit-tls', 'submission'];
const usesTls = (mode: Mode) => mode !== 'plain';
const usesAuth = (mode: Mode) => mode === 'implicit-tls' || mode === 'submission';

const PYTHON_CLIENT = `
import smtplib, ssl, sys
port, mode, path, sender, recipient, user, password = sys.argv[1:]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
client = smtplib.SMTP_SSL('127.0.0.1', int(port), context=context) if mode == 'implicit-tls' else smtplib.SMTP('127.0.0.1', int(port))
client.ehlo('python.test')
if mode in ('starttls', 'submission'):
    client.starttls(context=context)
    client.ehlo('python.test')
if user:
    client.login(user, password)
assert client.mail(sender)[0] == 250
assert client.rcpt(recipient)[0] == 250
code, reply = client.data(open(path, 'rb').read())
print(code, reply.decode())
client.quit()
`;

describe('listener: real SMTP clients deliver byte for byte', () => {
  const t = useListener();
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-clients-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const portFor = (mode: Mode) =>
    t.listener.port(
      mode === 'plain' || mode === 'starttls' ? 'mx' : mode === 'submission' ? 'submission' : 'implicit-tls',
    );

  /** The reply's message is stored as the sent bytes behind our trace header, and announced. */
  async function assertDelivered(
    reply: string,
    sent: Buffer,
    expected: { sender: string; recipient: string; mode: Mode },
  ): Promise<void> {
    const event = await t.events.get(queuedId(reply));
    const raw = await readObject(t.emulator.s3, event.raw.bucket, event.raw.key);
    assert.equal(event.raw.size, raw.length);
    assert.equal(event.raw.sha256, sha256(raw));
    const { header, rest } = splitTraceHeader(raw);
    assert.ok(
      rest.equals(sent),
      `stored body differs from the sent bytes (${rest.length} vs ${sent.length})`,
    );
    assert.equal(event.envelope.mailFrom, expected.sender);
    assert.deepEqual(event.envelope.rcptTo, [expected.recipient]);
    assert.equal(event.envelope.remoteAddress, '127.0.0.1');
    assert.equal(event.envelope.localPort, portFor(expected.mode));
    assert.equal(event.envelope.authUser, usesAuth(expected.mode) ? USER : null);
    const protocol = `ESMTP${usesTls(expected.mode) ? 'S' : ''}${usesAuth(expected.mode) ? 'A' : ''}`;
    assert.match(
      header,
      new RegExp(` with ${protocol} id ${event.id}\\r\\n\\tfor <${expected.recipient}>; `),
    );
    if (usesTls(expected.mode)) {
      assert.match(event.envelope.tls?.protocol ?? '', /^TLSv1\.[23]$/);
      assert.ok(event.envelope.tls?.cipher);
    } else {
      assert.equal(event.envelope.tls, null);
    }
  }

  async function viaNodemailer(
    mode: Mode,
    message: Buffer,
    sender: string,
    recipient: string,
  ): Promise<string> {
    const transport = createTransport({
      host: '127.0.0.1',
      port: portFor(mode),
      secure: mode === 'implicit-tls',
      ignoreTLS: mode === 'plain',
      requireTLS: mode === 'starttls' || mode === 'submission',
      tls: { rejectUnauthorized: false },
      ...(usesAuth(mode) ? { auth: { user: USER, pass: PASSWORD } } : {}),
    });
    try {
      const info = await transport.sendMail({ envelope: { from: sender, to: [recipient] }, raw: message });
      return info.response;
    } finally {
      transport.close();
    }
  }

  async function viaPython(mode: Mode, message: Buffer, sender: string, recipient: string): Promise<string> {
    const path = join(dir, `${sender}.eml`);
    await writeFile(path, message);
    const auth = usesAuth(mode) ? [USER, PASSWORD] : ['', ''];
    const { stdout } = await run('python3', [
      '-c',
      PYTHON_CLIENT,
      String(portFor(mode)),
      mode,
      path,
      sender,
      recipient,
      ...auth,
    ]);
    return stdout.trim();
  }

  async function viaSwaks(mode: Mode, message: Buffer, sender: string, recipient: string): Promise<string> {
    const path = join(dir, `${sender}.eml`);
    // swaks always ends DATA with CRLF.CRLF, so the file leaves out the last line's CRLF.
    await writeFile(path, message.subarray(0, -2));
    const args = ['--server', '127.0.0.1', '--port', String(portFor(mode)), '--helo', 'swaks.test'];
    args.push('--from', sender, '--to', recipient, '--data', path, '--suppress-data');
    if (mode === 'starttls' || mode === 'submission') args.push('--tls');
    if (mode === 'implicit-tls') args.push('--tls-on-connect');
    if (usesAuth(mode)) args.push('--auth', 'PLAIN', '--auth-user', USER, '--auth-password', PASSWORD);
    const { stdout } = await run('swaks', args);
    return /250 2\.0\.0 queued as \w+/.exec(stdout)?.[0] ?? stdout;
  }

  const clients = { nodemailer: viaNodemailer, python: viaPython, swaks: viaSwaks };
  for (const [name, deliver] of Object.entries(clients)) {
    for (const mode of MODES) {
      it(`${name} delivers 1 KB over ${mode}`, async () => {
        const sender = `${name}-${mode}@sender.test`;
        const recipient = `${name}.${mode}@example.test`;
        const message = makeMessage(1024, `${name}-${mode}`, recipient);
        const reply = await deliver(mode, message, sender, recipient);
        await assertDelivered(reply, message, { sender, recipient, mode });
      });
    }
  }

  const sizes: [string, number, Mode][] = [
    ['4.9 MiB (one PutObject)', Math.floor(4.9 * 1024 * 1024), 'plain'],
    ['5.1 MiB (multipart)', Math.ceil(5.1 * 1024 * 1024), 'starttls'],
    ['30 MB (multipart, several parts)', 30_000_000, 'plain'],
  ];
  for (const [label, size, mode] of sizes) {
    it(`round-trips ${label} byte for byte`, async () => {
      const sender = `size-${size}@sender.test`;
      const message = makeMessage(size, `size-${size}`);
      const reply = await viaNodemailer(mode, message, sender, 'someone@example.test');
      await assertDelivered(reply, message, { sender, recipient: 'someone@example.test', mode });
    });
  }
});
