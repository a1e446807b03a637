import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { DomainNotVerifiedError, RcptIndex } from '../../core/control/index.ts';
import {
  type Config,
  parseConfigText,
  RelayDeniedError,
  type Route,
  Router,
  UnknownRecipientError,
} from '../../core/index.ts';
import { seededRandom } from './random.ts';

const config = parseConfigText(
  `
domains: [example.test, '*.corp.test', other.test]
listeners: [{ port: 2525, mode: mx }]
health: { port: 8026 }
routes:
  - { id: catch-all, match: ['*@example.test'], endpoints: ['https://a.test/'], secret: { env: S } }
  - { id: support, match: ['support-*@example.test', '/^billing\\d+@example\\.test$/'], endpoints: ['https://b.test/'], secret: { env: S } }
  - { id: ceo, match: ['ceo@example.test', 'CEO+Board@Example.test'], endpoints: ['https://c.test/'], secret: { env: S } }
  - { id: corp, match: ['*@eu.corp.test', 'x*@*.corp.test'], endpoints: ['https://d.test/'], secret: { env: S } }
  - { id: second-ceo, match: ['ceo@example.test'], endpoints: ['https://e.test/'], secret: { env: S } }
  - { id: late-glob, match: ['support-eu@example.test', 's*@example.test'], endpoints: ['https://f.test/'], secret: { env: S } }
`,
  { source: 'routes.yaml', runtime: 'local' },
);

/** What a resolver answers for a recipient: the route id, or the refusal's class and code. */
function answer(resolver: Pick<Router, 'resolve'>, recipient: string): string {
  try {
    const { route, address } = resolver.resolve(recipient);
    return `${route.id} ${address.mailboxHash}`;
  } catch (error) {
    return `${(error as Error).name} ${(error as { responseCode?: number }).responseCode}`;
  }
}

const RECIPIENTS = [
  'ceo@example.test',
  'CEO+ticket-1@EXAMPLE.test',
  'ceo+board@example.test',
  'support-eu@example.test',
  'support-us+x@example.test',
  'sales@example.test',
  'billing42@example.test',
  'billing42+x@example.test',
  'anyone@example.test',
  'x@eu.corp.test',
  'xavier@fr.corp.test',
  'zed@fr.corp.test',
  'a@corp.test',
  'a@other.test',
  'victim@gmail.test',
  'not-an-address',
  '@example.test',
];

function route(id: string, match: string[]): Route {
  return { ...config.routes[0]!, id, match };
}

describe('RcptIndex', () => {
  it('answers as the config Router does for the config file alone', () => {
    const router = new Router(config);
    const index = new RcptIndex(config);
    for (const recipient of RECIPIENTS)
      assert.equal(answer(index, recipient), answer(router, recipient), recipient);
  });

  it('answers as a Router over the same routes when API routes come and go one at a time', () => {
    const index = new RcptIndex(config);
    const api: Route[] = [
      route('api-exact', ['sales@example.test', 'a@other.test']),
      route('api-glob', ['zed*@fr.corp.test']),
      route('api-regex', ['/^any.*@example\\.test$/']),
      route('api-catch-all', ['*@other.test']),
    ];
    api.forEach((r, i) => {
      index.putRoute(r, `2026-01-01T00:00:0${i}Z`);
    });
    const router = new Router({ ...config, routes: [...config.routes, ...api] });
    for (const recipient of RECIPIENTS)
      assert.equal(answer(index, recipient), answer(router, recipient), recipient);

    // Change one, remove one: the index follows without a rebuild.
    const changed = route('api-glob', ['xav*@fr.corp.test']);
    index.putRoute(changed, '2026-01-01T00:00:01Z');
    assert.equal(index.removeRoute('api-exact'), true);
    assert.equal(index.removeRoute('api-exact'), false);
    const after = new Router({ ...config, routes: [...config.routes, changed, api[2]!, api[3]!] });
    for (const recipient of RECIPIENTS)
      assert.equal(answer(index, recipient), answer(after, recipient), recipient);
    assert.deepEqual(index.size, { routes: 3, domains: 0 });
  });

  it('agrees with the Router on randomly made routes and addresses, as routes and domains change', () => {
    const random = seededRandom(7);
    const locals = ['a', 'ab', 'b', 'sup', 'support', 'x'];
    // An API domain, turned off and on; a name that fits a table slot with short globs only (54
    // characters), and one whose addresses do not fit (60).
    const api = 'api.test';
    const long = [
      'fits-with-a-short-glob-beside-it-in-one-slot.long.test',
      'too-long-for-a-slot'.padEnd(55, '-x').concat('.test'),
    ];
    const domains = ['example.test', 'eu.corp.test', 'other.test', api, ...long];
    const configDomains = [...config.domains, ...long];
    // Half the rounds have no regex and no glob across domains: the index then answers most
    // addresses from its table alone, which those patterns switch off.
    const patternOf = (domainWide: boolean) => {
      const domain = domains[random(domains.length)]!;
      switch (random(domainWide ? 6 : 4)) {
        case 0:
          return `*@${domain}`;
        case 1: {
          // A prefix or a suffix: `ab+t@…` is taken by `*b@…` only without its tag.
          const local = locals[random(locals.length)]!;
          return random(2) ? `${local}*@${domain}` : `*${local}@${domain}`;
        }
        case 2:
          // An exact address with its tag: it competes with the untagged one for `local+t@…`.
          return `${locals[random(locals.length)]}+t@${domain}`;
        case 3:
          return `${locals[random(locals.length)]}@${domain}`;
        case 4:
          return `/^${locals[random(locals.length)]}.*@${domain.replace(/\./g, '\\.')}$/`;
        default:
          return `${locals[random(locals.length)]}*t@*.corp.test`;
      }
    };
    for (let round = 0; round < 400; round++) {
      const domainWide = round % 2 === 0;
      const count = domainWide ? 12 : 1 + random(12);
      const routes = Array.from({ length: count }, (_, i) =>
        route(`r${i}`, random(2) ? [patternOf(domainWide)] : [patternOf(domainWide), patternOf(domainWide)]),
      );
      const base: Pick<Config, 'domains' | 'routes'> = {
        domains: configDomains,
        routes: routes.slice(0, 4),
      };
      const index = new RcptIndex(base);
      index.putDomain(api, 'verified');
      routes.slice(4).forEach((r, i) => {
        index.putRoute(r, `2026-01-01T00:00:${String(i).padStart(2, '0')}Z`);
      });
      const agrees = (kept: Route[], apiDomain: boolean, when: string) => {
        const router = new Router({
          domains: apiDomain ? [...configDomains, api] : configDomains,
          routes: kept,
        });
        for (const local of locals)
          for (const domain of domains)
            for (const tag of ['', '+t']) {
              const recipient = `${local}${tag}@${domain}`;
              assert.equal(
                answer(index, recipient),
                answer(router, recipient),
                `round ${round}, ${when}: ${recipient}`,
              );
            }
      };
      agrees(routes, true, 'all put');
      // Removing API routes one by one must bring back what each one shadowed.
      const removed = new Set(routes.slice(4).filter(() => random(2) === 0));
      for (const r of removed) index.removeRoute(r.id);
      const kept = routes.filter((r) => !removed.has(r));
      agrees(kept, true, 'some removed');
      index.removeDomain(api);
      agrees(kept, false, 'API domain removed');
      index.putDomain(api, 'verified');
      agrees(kept, true, 'API domain back');
    }
  });

  it('refuses an API domain until it is verified, with 550 5.7.1, and forgets it when removed', () => {
    const index = new RcptIndex(config);
    index.putRoute(route('tenant', ['*@customer.test']), '2026-01-01T00:00:00Z');
    assert.throws(() => index.resolve('help@customer.test'), RelayDeniedError);
    index.putDomain('customer.test', 'pending');
    assert.throws(
      () => index.resolve('help@customer.test'),
      (error: DomainNotVerifiedError) =>
        error instanceof DomainNotVerifiedError && error.responseCode === 550 && error.enhanced === '5.7.1',
    );
    index.putDomain('customer.test', 'verified');
    assert.equal(index.resolve('help@customer.test').route.id, 'tenant');
    assert.throws(() => index.resolve('help@sub.customer.test'), RelayDeniedError);
    index.removeDomain('customer.test');
    assert.throws(() => index.resolve('help@customer.test'), RelayDeniedError);
    index.removeRoute('tenant');
    index.putDomain('customer.test', 'verified');
    assert.throws(() => index.resolve('help@customer.test'), UnknownRecipientError);
  });

  it('answers exact addresses of an API domain only while the domain takes mail', () => {
    const index = new RcptIndex(config);
    index.putRoute(
      route('tenant-exact', ['help@customer.test', 'help+vip@customer.test']),
      '2026-01-01T00:00:00Z',
    );
    index.putDomain('customer.test', 'pending');
    assert.throws(() => index.resolve('help@customer.test'), DomainNotVerifiedError);
    assert.throws(() => index.resolve('help+vip@customer.test'), DomainNotVerifiedError);
    index.putDomain('customer.test', 'verified');
    assert.equal(index.resolve('HELP@customer.test').route.id, 'tenant-exact');
    assert.equal(index.resolve('help+vip@customer.test').route.id, 'tenant-exact');
    // A later route on the same address loses to the older one, and takes over when that one goes.
    index.putRoute(route('later', ['help@customer.test']), '2026-02-01T00:00:00Z');
    assert.equal(index.resolve('help@customer.test').route.id, 'tenant-exact');
    index.removeRoute('tenant-exact');
    assert.equal(index.resolve('help+vip@customer.test').route.id, 'later');
    index.removeDomain('customer.test');
    assert.throws(() => index.resolve('help@customer.test'), RelayDeniedError);
    index.putDomain('customer.test', 'verified');
    assert.equal(index.resolve('help@customer.test').route.id, 'later');
  });

  it('holds one copy of each filtering policy, and each route answers with its own', () => {
    const index = new RcptIndex(config);
    index.putDomain('customer.test', 'verified');
    // As the store gives them: every route with its own copy of its policy.
    const copy = (r: Route): Route => structuredClone(r);
    const strict = structuredClone(config.routes[0]!.filtering);
    strict.senders.block = [{ kind: 'domain', domain: 'spam.test' }];
    index.putRoute(copy(route('a', ['a@customer.test'])), '2026-01-01T00:00:00Z');
    index.putRoute(copy(route('b', ['b@customer.test'])), '2026-01-01T00:00:01Z');
    index.putRoute(copy({ ...route('c', ['c@customer.test']), filtering: strict }), '2026-01-01T00:00:02Z');
    const [a, b, c] = ['a', 'b', 'c'].map((id) => index.resolve(`${id}@customer.test`).route);
    assert.deepEqual(a!.filtering, config.routes[0]!.filtering);
    assert.equal(a!.filtering, b!.filtering, 'equal policies are one object');
    assert.deepEqual(c!.filtering, strict);
    assert.deepEqual([a!.id, b!.id, c!.id], ['a', 'b', 'c']);
    // A route changed to another policy answers with the new one.
    index.putRoute(copy({ ...route('b', ['b@customer.test']), filtering: strict }), '2026-01-01T00:00:01Z');
    assert.deepEqual(index.resolve('b@customer.test').route.filtering, strict);
    assert.equal(
      index.resolve('b@customer.test').route.filtering,
      index.resolve('c@customer.test').route.filtering,
    );
  });

  it('accepts unverified API domains only when told to', () => {
    const index = new RcptIndex(config, { acceptUnverifiedDomains: true });
    index.putRoute(route('tenant', ['*@customer.test']), '2026-01-01T00:00:00Z');
    index.putDomain('customer.test', 'pending');
    assert.equal(index.resolve('help@customer.test').route.id, 'tenant');
  });

  it('answers at once an RCPT that API patterns of a backtracking shape would hold for ever', () => {
    // JavaScript's engine takes about 2^n steps for 64 "a"s against `(a+)+b` or the regex a
    // ten-star glob would make. Run in a child process, a regression fails at its timeout instead of
    // hanging the test run.
    const script = `
      const { RcptIndex } = await import(${JSON.stringify(new URL('../../core/control/index.ts', import.meta.url).href)});
      const config = ${JSON.stringify({ domains: config.domains, routes: config.routes })};
      const index = new RcptIndex(config);
      const api = (id, match) => index.putRoute({ ...config.routes[0], id, match }, '2026-01-01T00:00:00Z');
      api('api-regex', ['/^(a+)+b@example\\.test$/']);
      api('api-glob', ['a*a*a*a*a*a*a*a*a*a*c@example.test', 'a*a*a*a*a*a*a*a*a*a*c@*.test']);
      const local = 'a'.repeat(64);
      for (const tail of ['', 'b', 'c']) console.log(index.resolve(local + tail + '@example.test').route.id);
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '--eval', script], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(child.signal, null, 'the RCPT did not finish: a pattern backtracked');
    assert.equal(child.stderr, '');
    assert.deepEqual(child.stdout.trim().split('\n'), ['catch-all', 'api-regex', 'api-glob']);
  });

  it('lets an API route stored with a regex RE2 cannot run take no mail, and still load', () => {
    const lookahead = '/^(?!noreply)[a-z]+@other\\.test$/';
    const index = new RcptIndex(config);
    index.putRoute(route('legacy', [lookahead, 'legacy@other.test']), '2026-01-01T00:00:00Z');
    assert.throws(() => index.resolve('help@other.test'), UnknownRecipientError);
    assert.equal(index.resolve('legacy@other.test').route.id, 'legacy');
    // The config file's regexes run on JavaScript's engine, lookahead and all.
    const router = new Router({ ...config, routes: [route('file', [lookahead])] });
    assert.equal(router.resolve('help@other.test').route.id, 'file');
  });

  it('groups recipients by route as a Router does', () => {
    const index = new RcptIndex(config);
    assert.deepEqual(
      index
        .group(['a@example.test', 'ceo@example.test', 'b@example.test', 'x@gmail.test'])
        .map((g) => [g.route.id, g.recipients]),
      [
        ['catch-all', ['a@example.test', 'b@example.test']],
        ['ceo', ['ceo@example.test']],
      ],
    );
  });
});
