import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  parseAddress,
  parseConfigText,
  RelayDeniedError,
  Router,
  UnknownRecipientError,
} from '../../core/index.ts';
import { compileMatcher, globMatcher, MAX_RE2_PROGRAM_SIZE, matchIssue } from '../../core/routes.ts';
import { seededRandom } from '../control-plane/random.ts';

const config = parseConfigText(
  `
domains: [example.test, '*.corp.test']
listeners: [{ port: 2525, mode: mx }]
health: { port: 8026 }
routes:
  - { id: catch-all, match: ['*@example.test'], endpoints: ['https://a.test/'], secret: { env: S } }
  - { id: support, match: ['support-*@example.test', '/^billing\\d+@example\\.test$/'], endpoints: ['https://b.test/'], secret: { env: S } }
  - { id: ceo, match: ['ceo@example.test'], endpoints: ['https://c.test/'], secret: { env: S } }
  - { id: corp, match: ['*@eu.corp.test'], endpoints: ['https://d.test/'], secret: { env: S } }
`,
  { source: 'routes.yaml', runtime: 'local' },
);
const router = new Router(config);

describe('Router', () => {
  it('prefers an exact address over a pattern over a catch-all', () => {
    assert.equal(router.resolve('ceo@example.test').route.id, 'ceo');
    assert.equal(router.resolve('support-eu@example.test').route.id, 'support');
    assert.equal(router.resolve('billing42@example.test').route.id, 'support');
    assert.equal(router.resolve('anyone@example.test').route.id, 'catch-all');
  });

  it('gives an address that two equally specific patterns take to the route listed first', () => {
    const twice = (first: string, second: string) =>
      new Router({
        domains: ['example.test'],
        routes: [first, second].map((id) => ({ ...config.routes[0]!, id, match: ['sales-*@example.test'] })),
      }).resolve('sales-eu@example.test').route.id;
    assert.equal(twice('alpha', 'beta'), 'alpha');
    assert.equal(twice('beta', 'alpha'), 'beta');
  });

  it('matches case-insensitively and strips the plus tag into mailboxHash', () => {
    const resolved = router.resolve('CEO+Ticket-123@Example.TEST');
    assert.equal(resolved.route.id, 'ceo');
    assert.equal(resolved.address.mailboxHash, 'ticket-123');
    assert.equal(router.resolve('someone@example.test').address.mailboxHash, null);
  });

  it('refuses foreign domains as relaying and unknown addresses as unknown', () => {
    assert.throws(() => router.resolve('victim@gmail.test'), RelayDeniedError);
    assert.throws(() => router.resolve('not-an-address'), RelayDeniedError);
    assert.throws(() => router.resolve('x@other.corp.test'), UnknownRecipientError);
    assert.equal(router.resolve('x@eu.corp.test').route.id, 'corp');
  });

  it('groups a message’s recipients by route', () => {
    const groups = router.group(['a@example.test', 'ceo@example.test', 'b@example.test', 'x@gmail.test']);
    assert.deepEqual(
      groups.map((group) => [group.route.id, group.recipients]),
      [
        ['catch-all', ['a@example.test', 'b@example.test']],
        ['ceo', ['ceo@example.test']],
      ],
    );
  });
});

describe('match patterns', () => {
  it('matches a glob, however many stars, as the regular expression it stands for', () => {
    const random = seededRandom(11);
    const pick = (alphabet: string, length: number) =>
      Array.from({ length }, () => alphabet[random(alphabet.length)]).join('');
    for (let round = 0; round < 5000; round++) {
      const glob = pick('ab*', 1 + random(7));
      const text = pick('ab', random(9));
      const meant = new RegExp(`^${glob.replace(/\*/g, '.*')}$`).test(text);
      assert.equal(globMatcher(glob)(text), meant, `${glob} on "${text}"`);
    }
  });

  it('runs an API regex on RE2 as JavaScript runs it: anywhere in the address, in any case, tag or not', () => {
    const takes = (pattern: string, address: string) =>
      compileMatcher(pattern, 're2').test(parseAddress(address)!);
    assert.ok(takes('/billing\\d+@/', 'Billing42+x@Example.test'));
    assert.ok(takes('/^billing42@example\\.test$/', 'billing42+x@example.test'));
    assert.ok(!takes('/^billing\\d+@example\\.test$/', 'billing@example.test'));
    assert.ok(takes('/^BILLING\\d/', 'billing1@example.test'));
    // RFC 5321 caps an address at 254 characters; a longer RCPT is tested against no API regex.
    assert.ok(takes('/@example\\.test$/', `${'a'.repeat(241)}@example.test`));
    assert.ok(!takes('/@example\\.test$/', `${'a'.repeat(242)}@example.test`));
  });

  it('says why RE2 refuses a pattern JavaScript takes, and why a catch-all of "*" matches nothing', () => {
    assert.equal(matchIssue('/^(?!noreply)a@x\\.test$/', 'js'), undefined);
    assert.match(
      matchIssue('/^(?!noreply)a@x\\.test$/', 're2') ?? '',
      /^bad pattern: not an RE2 pattern .*\(\?!/,
    );
    assert.match(matchIssue('/(a)\\1@x\\.test/', 're2') ?? '', /backreferences.*\\1/);
    assert.match(matchIssue('/a@x\\.test/g', 're2') ?? '', /flag "g"/);
    // JavaScript's g and y make each test start where the last match ended: every other RCPT would fail.
    for (const flag of ['g', 'y'])
      assert.match(matchIssue(`/a@x\\.test/${flag}`, 'js') ?? '', new RegExp(`flag "${flag}"`));
    const large = `/^[a-z]{${MAX_RE2_PROGRAM_SIZE}}@x\\.test$/`;
    assert.equal(matchIssue(large, 'js'), undefined);
    assert.match(matchIssue(large, 're2') ?? '', new RegExp(`too large: .* at most ${MAX_RE2_PROGRAM_SIZE}`));
    for (const pattern of ['*@*', '*@*.example.test'])
      assert.match(matchIssue(pattern, 'js') ?? '', /would match no mail/);
    assert.equal(matchIssue('a*@*.example.test', 'js'), undefined);
  });
});
