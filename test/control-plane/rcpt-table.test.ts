import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RcptTable } from '../../core/control/rcpt-table.ts';
import type { Route } from '../../core/index.ts';
import { seededRandom } from './random.ts';

const route = (id: string) => ({ id }) as Route;

describe('RcptTable', () => {
  it('holds what a Map holds through random puts and removals, as it grows', () => {
    const random = seededRandom(11);
    // Short keys crowd a small table (runs that wrap around its end, removals inside runs); long and
    // non-Latin-1 ones are held outside it.
    const keys = [
      ...Array.from({ length: 400 }, (_, i) => `u${i}@d${i % 7}.test`),
      ...Array.from({ length: 20 }, (_, i) => `${'long'.repeat(14)}${i}@example.test`),
      ...Array.from({ length: 20 }, (_, i) => `jos\u00e9${i}@exampl\u00e9.test`),
      ...Array.from({ length: 20 }, (_, i) => `\u7528\u6237${i}@\u4f8b\u5b50.test`),
    ];
    const table = new RcptTable();
    const expected = new Map<string, Route>();
    for (let step = 0; step < 6000; step++) {
      const key = keys[random(keys.length)]!;
      // More puts than removals early, so the table grows through several sizes, then it drains.
      if (random(10) < (step < 3000 ? 7 : 3)) {
        const value = route(`${key}#${step}`);
        table.setAddress(key, value);
        expected.set(key, value);
      } else {
        table.setAddress(key, undefined);
        expected.delete(key);
      }
      if (step % 50 === 0 || step > 5900)
        for (const k of keys) assert.equal(table.address(k), expected.get(k), `step ${step}: ${k}`);
    }
  });

  it("answers a domain's glob on the local part as written or without its tag, else its catch-all", () => {
    const table = new RcptTable();
    const [glob, catchAll] = [route('glob'), route('all')];
    table.setDomain('tenant.test', { glob: { prefix: 'support-', suffix: '-eu', route: glob }, catchAll });
    const ask = (address: string, bare: string) =>
      table.domainRoute('tenant.test', address, address.indexOf('@'), bare)?.id;
    assert.equal(ask('support-1-eu@tenant.test', 'support-1-eu'), 'glob');
    assert.equal(ask('support--eu@tenant.test', 'support--eu'), 'glob');
    assert.equal(ask('support-eu@tenant.test', 'support-eu'), 'all', 'prefix and suffix may not overlap');
    assert.equal(ask('support-1-eu+x@tenant.test', 'support-1-eu'), 'glob', 'taken without its tag');
    assert.equal(ask('support-1-us@tenant.test', 'support-1-us'), 'all');
    assert.equal(
      table.domainRoute('other.test', 'a@other.test', 1, 'a'),
      null,
      'not held: answered elsewhere',
    );

    table.setDomain('tenant.test', { glob: { prefix: '', suffix: '', route: glob } });
    assert.equal(ask('anyone@tenant.test', 'anyone'), 'glob');
    table.setDomain('tenant.test', {});
    assert.equal(
      table.domainRoute('tenant.test', 'a@tenant.test', 1, 'a'),
      undefined,
      'takes mail, no route',
    );
    table.setDomain('tenant.test', undefined);
    assert.equal(table.domainRoute('tenant.test', 'a@tenant.test', 1, 'a'), null);
  });

  it('does not hold a domain whose name and glob do not fit a slot', () => {
    const table = new RcptTable();
    const name = `${'x'.repeat(50)}.test`;
    table.setDomain(name, { glob: { prefix: 'a', suffix: '', route: route('fits') } });
    assert.equal(table.domainRoute(name, `ab@${name}`, 2, 'ab')?.id, 'fits');
    table.setDomain(name, { glob: { prefix: 'abcdef', suffix: '', route: route('too-long') } });
    assert.equal(table.domainRoute(name, `abcdefg@${name}`, 7, 'abcdefg'), null);
  });
});
