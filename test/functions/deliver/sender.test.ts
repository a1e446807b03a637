import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const SENDER = new URL('../../../functions/deliver/sender.ts', import.meta.url).href;

/** Whether this machine lets us make a network namespace without routes (`unshare -rn`, no root needed). */
function canUnshareNetwork(): boolean {
  try {
    execFileSync('unshare', ['-rn', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Run inside a network namespace with no route at all, where connect() fails at once with
// ENETUNREACH (as an IPv6 endpoint does in Lambda). No packet leaves the namespace.
const PROBE = `
import { createHttpSender } from ${JSON.stringify(SENDER)};
const uncaught = [];
process.on('uncaughtException', (error) => uncaught.push(error.message));
// A name that resolves at once to a public address, as a cached or local resolver does.
const lookup = (hostname, options, callback) =>
  options.all ? callback(null, [{ address: '8.8.8.8', family: 4 }]) : callback(null, '8.8.8.8', 4);
const send = createHttpSender({ runtime: 'aws', lookup });
const results = [];
for (const url of ['https://hooks.example.test/mail', 'https://8.8.8.8/mail']) {
  try {
    results.push(await send({ url, headers: {}, body: Buffer.from('{}'), timeoutMs: 2000 }));
  } catch (error) {
    results.push({ rejected: error.message });
  }
}
// Give a socket error emitted on a later tick the time to surface.
await new Promise((resolve) => setTimeout(resolve, 100));
console.log(JSON.stringify({ results, uncaught }));
`;

describe('webhook sender', () => {
  it('returns a network error, and throws nothing, when the connect fails at once (ENETUNREACH)', async (t) => {
    if (!canUnshareNetwork()) return t.skip('unshare -rn is not allowed here');
    const { stdout } = await promisify(execFile)(
      'unshare',
      ['-rn', process.execPath, '--input-type=module', '-e', PROBE],
      { timeout: 20_000 },
    );
    const { results, uncaught } = JSON.parse(stdout) as { results: unknown[]; uncaught: string[] };
    assert.deepEqual(uncaught, []);
    assert.equal(results.length, 2);
    for (const result of results as { kind: string; error: string }[]) {
      assert.equal(result.kind, 'network', JSON.stringify(result));
      assert.match(result.error, /^ENETUNREACH: /);
    }
  });
});
