/**
 * The building blocks in smtp-server's session hooks, wired the way the listener will wire them
 * (onConnect: rate limits and the DNSBL lookup; onMailFrom: message rate and SPF; onRcptTo: the
 * route's sender policy and failed-RCPT counting; onData: the scanning tee beside storage, then
 * one decision per route), against the real rspamd and clamd, a local DNS zone and real SMTP
 * clients bound to different loopback addresses.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { UnknownRecipientError } from '../../core/errors.ts';
import {
  combineRoutes,
  DnsblConfigSchema,
  decideRecipient,
  decideRoute,
  RateLimitsConfigSchema,
  type RouteDecision,
  type RouteFiltering,
  RouteFilteringSchema,
  ScannersConfigSchema,
  SenderList,
} from '../../core/filtering/index.ts';
import { createDnsZone } from '../../harness/dns-zone.ts';
import { countingSink, INFECTED, SPAM, sendFrom } from '../../harness/filtering-messages.ts';
import { type RunningScanner, skipUnless, startClamd, startRspamd } from '../../harness/scanners.ts';
import {
  ContentScanners,
  checkSpf,
  DnsblChecker,
  type DnsblResult,
  SessionGuard,
  type SpfFacts,
  startDmarc,
} from '../../listener/filtering/index.ts';
import { RawSmtp } from '../listener/helpers.ts';

const DNS = createDnsZone({
  '7.0.0.127.bl.test': { A: ['127.0.0.2'] },
  'bank.test': { TXT: [['v=spf1 ip4:127.0.0.2 -all']] },
  '_dmarc.bank.test': { TXT: [['v=DMARC1; p=reject']] },
});

const ROUTES: Record<string, RouteFiltering> = {
  'strict@example.test': RouteFilteringSchema.parse({
    spam: { action: 'reject' },
    spf: { fail: 'refuse' },
    dmarc: { reject: 'refuse' },
    senders: { block: ['spammer.test'] },
  }),
  'tagged@example.test': RouteFilteringSchema.parse({}),
  'vip@example.test': RouteFilteringSchema.parse({ senders: { allow: ['127.0.0.7'] } }),
};
const LISTS = new Map(
  Object.entries(ROUTES).map(([address, route]) => [
    address,
    { allow: new SenderList(route.senders.allow), block: new SenderList(route.senders.block) },
  ]),
);

/** What the hooks keep per session (the listener's session state). */
interface Facts {
  dnsbl?: Promise<DnsblResult>;
  spf?: SpfFacts;
  allowed: Map<string, boolean>;
}

interface Accepted {
  readonly from: string;
  readonly routes: ReadonlyMap<string, RouteDecision>;
}

const message = (from: string, body: string) =>
  `From: ${from}\r\nTo: someone@example.test\r\nSubject: Test\r\nMessage-ID: <${Math.random()}@x.test>\r\n\r\n${body}\r\n`;

describe('filtering wired into smtp-server session hooks', {
  skip: skipUnless('rspamd') || skipUnless('clamd'),
}, () => {
  let rspamd: RunningScanner;
  let clamd: RunningScanner;
  let server: SMTPServer;
  let port: number;
  const accepted: Accepted[] = [];

  before(async () => {
    [rspamd, clamd] = await Promise.all([startRspamd(), startClamd()]);
    const scanners = new ContentScanners(
      ScannersConfigSchema.parse({
        rspamd: { url: `http://127.0.0.1:${rspamd.port}` },
        clamd: { port: clamd.port },
      }),
    );
    const dnsblConfig = DnsblConfigSchema.parse({ zones: [{ zone: 'bl.test' }] });
    const dnsbl = new DnsblChecker(dnsblConfig, DNS.resolve);
    const guard = new SessionGuard(
      RateLimitsConfigSchema.parse({ connectionsPerMinute: 30, failedRecipientsPerSession: 3 }),
    );
    const facts = new Map<string, Facts>();
    const of = (session: SMTPServerSession) => facts.get(session.id)!;

    server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      onConnect(session, callback) {
        const limited = guard.onConnect(session, { authPort: false });
        if (limited) return callback(limited);
        facts.set(session.id, { dnsbl: dnsbl.check(session.remoteAddress), allowed: new Map() });
        callback();
      },
      onMailFrom(address, session, callback) {
        const limited = guard.onMailFrom(session);
        if (limited) return callback(limited);
        const helo = session.hostNameAppearsAs ?? '';
        void checkSpf({
          mailFrom: address.address,
          remoteAddress: session.remoteAddress,
          helo,
          hostname: 'mx.example.test',
          resolver: DNS.resolve,
          timeoutMs: 2000,
        }).then((spf) => {
          of(session).spf = spf;
          callback();
        });
      },
      onRcptTo(address, session, callback) {
        const route = ROUTES[address.address];
        if (!route)
          return callback(guard.onRcptRefused(session) ?? new UnknownRecipientError(address.address));
        const state = of(session);
        void state.dnsbl!.then((listing) => {
          const lists = LISTS.get(address.address)!;
          const decision = decideRecipient(route, {
            sender: {
              mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              remoteAddress: session.remoteAddress,
            },
            ...lists,
            dnsbl: listing,
            dnsblAction: dnsblConfig.action,
            spf: state.spf ?? null,
          });
          if (decision.refusal) return callback(decision.refusal);
          state.allowed.set(address.address, decision.allowed);
          callback();
        });
      },
      onData(stream, session, callback) {
        const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const rcptTo = session.envelope.rcptTo.map((rcpt) => rcpt.address);
        const state = of(session);
        const needsDmarc = rcptTo.some((rcpt) => ROUTES[rcpt]!.dmarc.reject !== 'accept');
        const dmarc = needsDmarc
          ? startDmarc({ spf: state.spf!, mailFrom, resolver: DNS.resolve })
          : undefined;
        const scan = scanners.start(
          { mailFrom, rcptTo, remoteAddress: session.remoteAddress, helo: session.hostNameAppearsAs ?? '' },
          dmarc ? [dmarc] : [],
        );
        const receive = async () => {
          await pipeline(stream, scan.tee, countingSink());
          const { spam, virus } = await scan.verdicts();
          const dmarcFacts = dmarc ? await dmarc.result : null;
          const decisions = new Map(
            rcptTo.map((rcpt) => [
              rcpt,
              decideRoute(ROUTES[rcpt]!, {
                spam,
                virus,
                dmarc: dmarcFacts,
                allowed: state.allowed.get(rcpt) ?? false,
              }),
            ]),
          );
          const { refusal, routes } = combineRoutes(decisions);
          if (refusal) return callback(refusal);
          accepted.push({ from: mailFrom, routes });
          callback(null, 'queued');
        };
        // Anything that breaks on the way is a 451: the sender keeps the message and retries.
        receive().catch((error: Error) => callback(Object.assign(error, { responseCode: 451 })));
      },
      onClose(session) {
        guard.onClose(session);
        facts.delete(session.id);
      },
    });
    server.listen(0, '127.0.0.1');
    await once(server.server, 'listening');
    port = (server.server.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await Promise.all([rspamd?.stop(), clamd?.stop()]);
  });

  const send = (options: { from: string; to: string[]; body: string; localAddress?: string }) =>
    sendFrom(port, options);

  it('refuses GTUBE for the strict route and tags it for the other; for both, the strict copy is quarantined', async () => {
    const strict = await send({ from: 'a@sender.test', to: ['strict@example.test'], body: SPAM });
    assert.equal(strict.code, 550);
    assert.match(strict.response!, /^550 5\.7\.1 Message refused as spam \(score 15\)/);
    const both = await send({
      from: 'a@sender.test',
      to: ['strict@example.test', 'tagged@example.test'],
      body: SPAM,
    });
    assert.equal(both.code, 250);
    const routes = accepted.at(-1)!.routes;
    assert.equal(routes.get('tagged@example.test')?.action, 'deliver');
    assert.equal(routes.get('tagged@example.test')?.spam.verdict, 'spam');
    assert.equal(routes.get('strict@example.test')?.action, 'quarantine');
  });

  it('refuses EICAR with 550 5.7.1 naming it, and delivers a clean message as ham and clean', async () => {
    const infected = await send({ from: 'a@sender.test', to: ['tagged@example.test'], body: INFECTED });
    assert.equal(infected.code, 550);
    assert.match(infected.response!, /^550 5\.7\.1 Message refused: malware found \(Eicar-Test-Signature/);
    const clean = await send({
      from: 'a@sender.test',
      to: ['tagged@example.test'],
      body: message('a@sender.test', 'Hi'),
    });
    assert.equal(clean.code, 250);
    const decision = accepted.at(-1)!.routes.get('tagged@example.test')!;
    assert.deepEqual(
      [decision.action, decision.spam.verdict, decision.virus.verdict],
      ['deliver', 'ham', 'clean'],
    );
  });

  it('refuses SPF fail at RCPT with 550 5.7.23 where the route says so, and accepts it elsewhere', async () => {
    const body = message('a@bank.test', 'Statement');
    const refused = await send({
      from: 'a@bank.test',
      to: ['strict@example.test'],
      body,
      localAddress: '127.0.0.3',
    });
    assert.equal(refused.code, 550);
    assert.match(refused.response!, /^550 5\.7\.23 SPF validation failed for bank\.test/);
    const passed = await send({
      from: 'a@bank.test',
      to: ['strict@example.test'],
      body,
      localAddress: '127.0.0.2',
    });
    assert.equal(passed.code, 250);
    const tagged = await send({
      from: 'a@bank.test',
      to: ['tagged@example.test'],
      body,
      localAddress: '127.0.0.3',
    });
    assert.equal(tagged.code, 250);
  });

  it('refuses a DMARC p=reject failure at the end of DATA with 550 5.7.1', async () => {
    // MAIL FROM has no SPF record (none, not refused at RCPT); From: claims bank.test unsigned.
    const forged = message('Bank <alerts@bank.test>', 'Please confirm your password');
    const refused = await send({
      from: 'x@elsewhere.test',
      to: ['strict@example.test'],
      body: forged,
      localAddress: '127.0.0.3',
    });
    assert.equal(refused.code, 550);
    assert.match(refused.response!, /^550 5\.7\.1 Unauthenticated email from bank\.test/);
  });

  it('refuses a DNSBL-listed client at RCPT naming the zone, unless the route allows it', async () => {
    const body = message('a@sender.test', 'Hello');
    const listed = await send({
      from: 'a@sender.test',
      to: ['strict@example.test'],
      body,
      localAddress: '127.0.0.7',
    });
    assert.equal(listed.code, 550);
    assert.match(listed.response!, /^550 5\.7\.1 Client address \[127\.0\.0\.7\] is listed by bl\.test/);
    const allowed = await send({
      from: 'a@sender.test',
      to: ['vip@example.test'],
      body,
      localAddress: '127.0.0.7',
    });
    assert.equal(allowed.code, 250);
  });

  it('refuses a blocked sender domain at RCPT', async () => {
    const blocked = await send({
      from: 'x@mail.spammer.test',
      to: ['strict@example.test'],
      body: message('x@mail.spammer.test', 'x'),
    });
    assert.equal(blocked.code, 550);
    assert.match(blocked.response!, /^550 5\.7\.1 Sender blocked/);
  });

  it('answers 421 4.7.0 at connect to a burst of sessions over the per-minute limit', async () => {
    const body = message('a@sender.test', 'burst');
    const results = await Promise.all(
      Array.from({ length: 36 }, () =>
        send({ from: 'a@sender.test', to: ['tagged@example.test'], body, localAddress: '127.0.0.9' }),
      ),
    );
    const codes = results.map((result) => result.code);
    assert.equal(codes.filter((code) => code === 250).length, 30);
    assert.equal(codes.filter((code) => code === 421).length, 6);
    assert.match(
      results.find((result) => result.code === 421)!.response!,
      /^421 4\.7\.0 Too many connections/,
    );
  });

  it('ends a dictionary attack with 421 4.7.0 at the third unknown recipient', async () => {
    const client = await RawSmtp.open(port);
    await client.command('EHLO attacker.test');
    await client.command('MAIL FROM:<a@attacker.test>');
    assert.match(await client.command('RCPT TO:<nobody1@example.test>'), /^550 5\.1\.1/);
    assert.match(await client.command('RCPT TO:<nobody2@example.test>'), /^550 5\.1\.1/);
    assert.match(
      await client.command('RCPT TO:<nobody3@example.test>'),
      /^421 4\.7\.0 Too many invalid recipients/,
    );
    assert.equal(await client.reply(), '', 'the server closed the session');
    client.close();
  });

  it('still accepts mail, tagged unavailable, once both scanners are killed', async () => {
    rspamd.kill();
    clamd.kill();
    const result = await send({
      from: 'a@sender.test',
      to: ['tagged@example.test'],
      body: message('a@sender.test', 'x'),
    });
    assert.equal(result.code, 250);
    const decision = accepted.at(-1)!.routes.get('tagged@example.test')!;
    assert.deepEqual([decision.spam.verdict, decision.virus.verdict], ['unavailable', 'unavailable']);
    assert.deepEqual(decision.reasons, ['scanner_unavailable']);
  });
});
