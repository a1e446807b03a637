import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText, RelayDeniedError, Router, UnknownRecipientError } from '../../core/index.ts';

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
