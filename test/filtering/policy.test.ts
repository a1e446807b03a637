import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as z from 'zod';
import {
  combineRoutes,
  DnsblConfigSchema,
  decideRecipient,
  decideRoute,
  decideSpf,
  type FilteringFacts,
  HeaderBlock,
  RateLimitedError,
  RateLimiter,
  RateLimitsConfigSchema,
  RouteFilteringSchema,
  routeOutcome,
  ScannersConfigSchema,
  SenderList,
  type SpamScan,
  SpfFailError,
  type VirusScan,
} from '../../core/filtering/index.ts';

const route = (input: z.input<typeof RouteFilteringSchema> = {}) => RouteFilteringSchema.parse(input);
const spam = (score: number): SpamScan => ({
  status: 'scanned',
  score,
  action: 'no action',
  symbols: [{ name: 'X', score }],
});
const CLEAN: VirusScan = { status: 'scanned', infected: false, names: [] };
const INFECTED: VirusScan = { status: 'scanned', infected: true, names: ['Eicar-Test-Signature'] };
const DOWN = { status: 'unavailable', reason: 'error' } as const;
const OFF = { status: 'unavailable', reason: 'disabled' } as const;
const facts = (over: Partial<Parameters<typeof decideRoute>[1]> = {}) => ({
  spam: spam(1),
  virus: CLEAN,
  dmarc: null,
  allowed: false,
  ...over,
});

describe('config schemas', () => {
  it('have scanners off, no DNSBL zones, and delivering actions by default', () => {
    assert.deepEqual(ScannersConfigSchema.parse(undefined), {
      rspamd: null,
      clamd: null,
      budget: 5,
      stall: 2,
    });
    assert.deepEqual(DnsblConfigSchema.parse(undefined).zones, []);
    const defaults = route();
    assert.equal(defaults.spam.action, 'tag');
    assert.equal(defaults.virus.action, 'reject');
    assert.equal(defaults.onUnavailable, 'tag');
    assert.equal(defaults.spf.fail, 'accept');
    assert.equal(defaults.dmarc.reject, 'accept');
    assert.equal(RateLimitsConfigSchema.parse(undefined).connectionsPerMinute, null);
  });

  it('fill in the scanner addresses of the sidecars', () => {
    const config = ScannersConfigSchema.parse({ rspamd: {}, clamd: {} });
    assert.equal(config.rspamd?.url, 'http://127.0.0.1:11333');
    assert.deepEqual([config.clamd?.host, config.clamd?.port], ['127.0.0.1', 3310]);
  });

  it('name a bad sender list entry by its path', () => {
    const result = RouteFilteringSchema.safeParse({ senders: { block: ['spammer.test', 'not an entry'] } });
    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0]?.path, ['senders', 'block', 1]);
  });

  it('document every field', () => {
    const schema = z.toJSONSchema(RouteFilteringSchema, { io: 'input', unrepresentable: 'any' }) as {
      properties: Record<string, { properties: Record<string, { description?: string }> }>;
    };
    for (const [name, section] of Object.entries(schema.properties)) {
      for (const [field, property] of Object.entries(section.properties ?? {})) {
        assert.ok(property.description, `${name}.${field} has a description`);
      }
    }
  });
});

describe('a route decides on the verdicts', () => {
  it('tags spam by default and refuses it at the reject threshold', () => {
    assert.equal(decideRoute(route(), facts({ spam: spam(7) })).action, 'deliver');
    assert.deepEqual(decideRoute(route(), facts({ spam: spam(7) })).reasons, ['spam']);
    const strict = route({ spam: { rejectThreshold: 15 } });
    const refused = decideRoute(strict, facts({ spam: spam(15) }));
    assert.equal(refused.action, 'reject');
    assert.equal(refused.refusal?.message, '5.7.1 Message refused as spam (score 15)');
    assert.equal(refused.refusal?.responseCode, 550);
    assert.equal(
      decideRoute(route({ spam: { action: 'quarantine' } }), facts({ spam: spam(6) })).action,
      'quarantine',
    );
    assert.equal(decideRoute(route(), facts({ spam: spam(5.9) })).spam.verdict, 'ham');
  });

  it('refuses a virus by default, naming it, even from an allowed sender', () => {
    const decision = decideRoute(route(), facts({ virus: INFECTED, allowed: true }));
    assert.equal(decision.action, 'reject');
    assert.equal(decision.refusal?.message, '5.7.1 Message refused: malware found (Eicar-Test-Signature)');
    assert.deepEqual(decision.virus, { verdict: 'infected', names: ['Eicar-Test-Signature'] });
    assert.equal(
      decideRoute(route({ virus: { action: 'quarantine' } }), facts({ virus: INFECTED })).action,
      'quarantine',
    );
  });

  it('delivers tagged when a scanner is down, or quarantines when the route says so', () => {
    const tagged = decideRoute(route(), facts({ spam: DOWN, virus: DOWN }));
    assert.equal(tagged.action, 'deliver');
    assert.deepEqual(tagged.reasons, ['scanner_unavailable']);
    assert.deepEqual(tagged.spam, { verdict: 'unavailable', score: null, threshold: 6, symbols: [] });
    assert.equal(
      decideRoute(route({ onUnavailable: 'quarantine' }), facts({ virus: DOWN })).action,
      'quarantine',
    );
    // Scanners that are not configured are not an outage.
    assert.equal(
      decideRoute(route({ onUnavailable: 'quarantine' }), facts({ spam: OFF, virus: OFF })).action,
      'deliver',
    );
  });

  it('lets an allowed sender through spam and DMARC policies', () => {
    const strict = route({ spam: { action: 'reject' }, dmarc: { reject: 'refuse' } });
    const dmarc = { result: 'fail', policy: 'reject', domain: 'bank.test' } as const;
    assert.equal(decideRoute(strict, facts({ spam: spam(20), dmarc })).action, 'reject');
    assert.equal(decideRoute(strict, facts({ spam: spam(20), dmarc, allowed: true })).action, 'deliver');
  });

  it('refuses a DMARC p=reject failure with 550 5.7.1 only when the route asks', () => {
    const dmarc = { result: 'fail', policy: 'reject', domain: 'bank.test' } as const;
    assert.equal(decideRoute(route(), facts({ dmarc })).action, 'deliver');
    assert.deepEqual(decideRoute(route({ dmarc: { reject: 'tag' } }), facts({ dmarc })).reasons, [
      'dmarc_reject',
    ]);
    const refused = decideRoute(route({ dmarc: { reject: 'refuse' } }), facts({ dmarc }));
    assert.equal(refused.refusal?.message.startsWith('5.7.1 Unauthenticated email from bank.test'), true);
  });

  it('refuses SPF fail at RCPT only on routes that say refuse, with 550 5.7.23', () => {
    const fail = { result: 'fail', domain: 'sender.test' };
    assert.equal(decideSpf(route(), fail, false), 'accept');
    assert.equal(decideSpf(route({ spf: { fail: 'refuse' } }), fail, false), 'refuse');
    assert.equal(decideSpf(route({ spf: { fail: 'refuse' } }), fail, true), 'accept');
    assert.equal(
      decideSpf(route({ spf: { fail: 'refuse' } }), { ...fail, result: 'softfail' }, false),
      'accept',
    );
    const error = new SpfFailError('sender.test');
    assert.deepEqual(
      [error.responseCode, error.message],
      [550, '5.7.23 SPF validation failed for sender.test'],
    );
  });

  it('refuses a message for several routes only when every route refuses it, else quarantines that copy', () => {
    const reject = decideRoute(route(), facts({ virus: INFECTED }));
    const deliver = decideRoute(route({ virus: { action: 'tag' } }), facts({ virus: INFECTED }));
    assert.equal(
      combineRoutes(
        new Map([
          ['a', reject],
          ['b', reject],
        ]),
      ).refusal,
      reject.refusal,
    );
    const mixed = combineRoutes(
      new Map([
        ['a', reject],
        ['b', deliver],
      ]),
    );
    assert.equal(mixed.refusal, null);
    assert.equal(mixed.routes.get('a')?.action, 'quarantine');
    assert.deepEqual(mixed.routes.get('a')?.reasons, ['virus', 'refused_for_route']);
    assert.equal(mixed.routes.get('b')?.action, 'deliver');
  });
});

describe('a route decides on each recipient', () => {
  const policy = route({
    spf: { fail: 'tag' },
    senders: { allow: ['partner.test'], block: ['203.0.113.0/24'] },
  });
  const lists = { allow: new SenderList(policy.senders.allow), block: new SenderList(policy.senders.block) };
  const decide = (
    mailFrom: string,
    remoteAddress: string,
    over: Partial<Parameters<typeof decideRecipient>[1]> = {},
  ) =>
    decideRecipient(policy, {
      sender: { mailFrom, remoteAddress },
      ...lists,
      dnsbl: null,
      dnsblAction: 'refuse',
      spf: null,
      ...over,
    });
  const listed = { listed: true, zones: ['bl.test'] };

  it('blocks before it allows, and an allowed sender skips DNSBL and SPF', () => {
    assert.equal(decide('a@partner.test', '203.0.113.5').refusal?.reason, 'sender_blocked');
    const allowed = decide('a@partner.test', '192.0.2.1', {
      dnsbl: listed,
      spf: { result: 'fail', domain: 'partner.test' },
    });
    assert.deepEqual([allowed.refusal, allowed.allowed], [null, true]);
  });

  it('refuses a listed client naming the zones, or tags it', () => {
    assert.equal(
      decide('a@x.test', '::ffff:192.0.2.1', { dnsbl: listed }).refusal?.message,
      '5.7.1 Client address [192.0.2.1] is listed by bl.test',
    );
    assert.deepEqual(decide('a@x.test', '192.0.2.1', { dnsbl: listed, dnsblAction: 'tag' }).tags, ['dnsbl']);
  });

  it('tags an SPF fail where the route says tag', () => {
    assert.deepEqual(decide('a@x.test', '192.0.2.1', { spf: { result: 'fail', domain: 'x.test' } }).tags, [
      'spf_fail',
    ]);
    assert.deepEqual(decide('a@x.test', '192.0.2.1', { spf: { result: 'pass', domain: 'x.test' } }).tags, []);
  });
});

describe('sender lists', () => {
  const list = new SenderList(
    RouteFilteringSchema.parse({
      senders: {
        block: ['boss@corp.test', 'spam.test', '198.51.100.0/24', '2001:db8:bad::/48', '203.0.113.7'],
      },
    }).senders.block,
  );
  const match = (mailFrom: string, remoteAddress = '192.0.2.1') => list.matches({ mailFrom, remoteAddress });

  it('match an address, a domain and its subdomains, case-insensitively', () => {
    assert.equal(match('Boss@Corp.test'), true);
    assert.equal(match('other@corp.test'), false);
    assert.equal(match('x@spam.test'), true);
    assert.equal(match('x@mail.spam.test'), true);
    assert.equal(match('x@notspam.test'), false);
    assert.equal(match(''), false);
  });

  it('match IPv4 and IPv6 networks, and IPv4-mapped client addresses', () => {
    assert.equal(match('a@ok.test', '198.51.100.77'), true);
    assert.equal(match('a@ok.test', '::ffff:198.51.100.77'), true);
    assert.equal(match('a@ok.test', '203.0.113.7'), true);
    assert.equal(match('a@ok.test', '203.0.113.8'), false);
    assert.equal(match('a@ok.test', '2001:db8:bad:1::25'), true);
    assert.equal(match('a@ok.test', '2001:db8:bae::25'), false);
  });
});

describe('the rate limiter', () => {
  it('allows the limit per window, refuses the burst beyond it, and recovers as the window slides', () => {
    let now = 0;
    const limiter = new RateLimiter({ limit: 10, windowMs: 60_000, maxKeys: 100, now: () => now });
    const burst = Array.from({ length: 15 }, () => limiter.hit('192.0.2.1'));
    assert.equal(burst.filter(Boolean).length, 10);
    assert.equal(limiter.hit('192.0.2.2'), true, 'another address has its own count');
    now = 60_000; // a new window: the previous 15 still weigh fully at its start
    assert.equal(limiter.hit('192.0.2.1'), false);
    now = 119_000; // 1/60 of the previous window still overlaps
    assert.equal(limiter.hit('192.0.2.1'), true);
    now = 240_000;
    assert.equal(limiter.count('192.0.2.1'), 0);
  });

  it('locks out after repeated failures until the window passes (AUTH)', () => {
    let now = 0;
    const failures = new RateLimiter({ limit: 3, windowMs: 900_000, maxKeys: 100, now: () => now });
    for (let i = 0; i < 3; i++) failures.hit('198.51.100.9');
    assert.equal(failures.exceeded('198.51.100.9'), true);
    now = 1_800_000;
    assert.equal(failures.exceeded('198.51.100.9'), false);
  });

  it('keeps at most maxKeys addresses however many distinct ones knock', () => {
    const limiter = new RateLimiter({ limit: 5, windowMs: 60_000, maxKeys: 1000 });
    for (let i = 0; i < 50_000; i++) limiter.hit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(limiter.size, 1000);
  });

  it('answers 421 4.7.0 or 450 4.7.1', () => {
    assert.equal(
      new RateLimitedError(421, 'Too many connections', 'connection_rate').message,
      '4.7.0 Too many connections',
    );
    assert.equal(
      new RateLimitedError(450, 'Too many messages', 'message_rate').message,
      '4.7.1 Too many messages',
    );
  });
});

describe('the header block', () => {
  it('finds From once the block ends, across chunk boundaries and folded lines', () => {
    const block = new HeaderBlock();
    const text =
      'Subject: hi\r\nFrom: "Bank, Inc."\r\n <alerts@bank.test>\r\nTo: a@example.test\r\n\r\nbody\r\n';
    const results = [...text].map((char) => block.push(Buffer.from(char)));
    const found = results.filter((result) => result !== undefined);
    assert.deepEqual(found, [{ from: ['alerts@bank.test'], fromFields: 1 }]);
  });

  it('counts several From fields and reads bare-LF messages', () => {
    const block = new HeaderBlock();
    assert.deepEqual(block.push(Buffer.from('From: a@one.test\nFrom: b@two.test\n\nbody')), {
      from: ['a@one.test', 'b@two.test'],
      fromFields: 2,
    });
  });

  it('gives up past its cap instead of holding a header block without end', () => {
    const block = new HeaderBlock(1024);
    for (let i = 0; i < 100; i++)
      assert.equal(block.push(Buffer.from(`X-Pad-${i}: ${'a'.repeat(60)}\r\n`)), undefined);
    assert.equal(block.push(Buffer.from('From: late@x.test\r\n\r\n')), undefined);
  });
});

describe("what parse makes of the listener's decisions (routeOutcome)", () => {
  const strict = { id: 'strict', filtering: route({ spam: { threshold: 5 } }) };
  const held: FilteringFacts = {
    spam: spam(15),
    virus: { status: 'unavailable', reason: 'timeout', detail: 'no verdict within 5000 ms' },
    routes: { strict: { action: 'quarantine', reasons: ['dnsbl', 'spam', 'scanner_unavailable'] } },
  };

  it("judges the score against the route's threshold and explains what is unavailable or only tagged", () => {
    const outcome = routeOutcome(held, strict);
    assert.equal(outcome.spam.verdict, 'spam');
    assert.equal(outcome.spam.threshold, 5);
    assert.equal(outcome.virus.verdict, 'unavailable');
    assert.deepEqual(outcome.warnings, [
      'scan_unavailable: clamd timeout (no verdict within 5000 ms)',
      'sender_policy: dnsbl',
    ]);
    assert.deepEqual(outcome.quarantine, ['dnsbl', 'spam', 'scanner_unavailable']);
  });

  it('delivers a released copy, saying it was held', () => {
    const outcome = routeOutcome({ ...held, released: true }, strict);
    assert.equal(outcome.quarantine, null);
    assert.ok(outcome.warnings.includes('released: quarantined for dnsbl, spam, scanner_unavailable'));
  });

  it('delivers with verdicts unavailable and no warning when nothing was scanned', () => {
    const outcome = routeOutcome(undefined, strict);
    assert.deepEqual(
      [outcome.spam.verdict, outcome.virus.verdict, outcome.quarantine],
      ['unavailable', 'unavailable', null],
    );
    assert.deepEqual(outcome.warnings, []);
  });
});
