/**
 * "Why did my mail bounce?": the local runtime (npm start) with rspamd beside its listener, real
 * SMTP clients (nodemailer) whose mail is refused at the end of DATA, and the CLI over the
 * runtime's HTTP API.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Refusal } from '../../core/control/index.ts';
import { type LocalRuntime, startLocalRuntime } from '../../dev/index.ts';
import { writeConfigFile } from '../../harness/config-file.ts';
import { SPAM, sendFrom } from '../../harness/filtering-messages.ts';
import { ALL_PORTS_FREE, mxPort } from '../../harness/local-runtime.ts';
import { type RunningScanner, skipUnless, startRspamd } from '../../harness/scanners.ts';
import { jsonLines, runCli, startCli } from '../cli/helpers.ts';

describe('refusals at the end of DATA in the local runtime, read with mailbridge refusals and tail', {
  skip: skipUnless('rspamd'),
}, () => {
  let dir: string;
  let rspamd: RunningScanner;
  let runtime: LocalRuntime;
  let env: Record<string, string>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-refusals-'));
    rspamd = await startRspamd();
    const route = (id: string, match: string, filtering: Record<string, unknown>) => ({
      id,
      match: [match],
      endpoints: ['http://127.0.0.1:8025/webhooks'],
      secret: { value: 'whsec_cmVmdXNhbHM=' },
      filtering,
    });
    const configFile = await writeConfigFile(dir, {
      hostname: 'mx.local.test',
      domains: ['example.test'],
      routes: [
        route('strict', 'strict@example.test', { spam: { action: 'reject' } }),
        route('inbox', '*@example.test', {}),
      ],
      listeners: [{ host: '127.0.0.1', port: 0, mode: 'mx' }],
      health: { host: '127.0.0.1', port: 0 },
      limits: { maxMessageBytes: 64 * 1024 },
      scanners: { rspamd: { url: `http://127.0.0.1:${rspamd.port}` } },
    });
    runtime = await startLocalRuntime({ configFile, dataDir: join(dir, 'data'), ports: ALL_PORTS_FREE });
    env = { MAILBRIDGE_API_URL: runtime.api.url, MAILBRIDGE_API_KEY: runtime.api.key };
  });
  after(async () => {
    await runtime?.close();
    await rspamd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a message too large and a spam refused by one route are refusals of their recipients, listed newest first and printed by tail', async () => {
    const tail = await startCli(
      ['tail', '--json', '--count', '3', '--interval', '0.2', '--timeout', '30'],
      'following the message log',
      { env },
    );
    const large = await sendFrom(mxPort(runtime), {
      from: 'ann@sender.test',
      to: ['support@example.test', 'sales@example.test'],
      body: `Subject: Scans\r\n\r\n${'A line of a large message body.\r\n'.repeat(3000)}`,
    });
    assert.equal(large.code, 552, large.response);
    const spam = await sendFrom(mxPort(runtime), {
      from: 'ann@sender.test',
      to: ['strict@example.test'],
      body: SPAM,
    });
    assert.equal(spam.code, 550, spam.response);
    assert.match(spam.response!, /^550 5\.7\.1 Message refused as spam/);

    const refusalOf = (recipient: string, reply: string) => ({
      recipient,
      reply,
      mailFrom: 'ann@sender.test',
      remoteAddress: '127.0.0.1',
    });
    const tooLarge = [
      refusalOf('sales@example.test', large.response!),
      refusalOf('support@example.test', large.response!),
    ];
    const spamRefused = refusalOf('strict@example.test', spam.response!);
    /** Oldest first without the times: the two refusals of one message may share a millisecond. */
    const oldestFirst = (refusals: ({ kind?: string } & Refusal)[]) => {
      const [first, second, third] = refusals.map(({ at: _at, kind: _kind, ...fields }) => fields);
      return [[first!, second!].sort((a, b) => a.recipient.localeCompare(b.recipient)), third];
    };

    const printed = jsonLines((await tail.done).stdout) as ({ kind: string } & Refusal)[];
    assert.deepEqual(
      printed.map(({ kind }) => kind),
      ['refused', 'refused', 'refused'],
    );
    assert.deepEqual(oldestFirst(printed), [tooLarge, spamRefused]);

    const listed = await runCli(['refusals', 'list', '--json'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const { items } = JSON.parse(listed.stdout) as { items: Refusal[] };
    assert.deepEqual(oldestFirst([...items].reverse()), [tooLarge, spamRefused]);
    assert.deepEqual(
      items.map(({ at }) => at),
      items
        .map(({ at }) => at)
        .sort()
        .reverse(),
    );
    const forSales = await runCli(['refusals', 'list', '--recipient', 'Sales@example.test'], { env });
    assert.equal(forSales.code, 0, forSales.stderr);
    assert.match(
      forSales.stdout,
      /^REFUSED\s+CLIENT\s+FROM\s+TO\s+REPLY\n\S+Z\s+127\.0\.0\.1\s+<ann@sender\.test>\s+sales@example\.test\s+552 5\.3\.4 Error: message exceeds fixed maximum message size 65536\n$/,
    );
  });
});
