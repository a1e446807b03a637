import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { useListener } from '../listener/helpers.ts';

// testssl.sh (Debian package testssl.sh, binary `testssl`) against the implicit-TLS port and the
// STARTTLS of the MX port: protocols (-p) and the standard cipher categories (-s), ~15 s each.
const run = promisify(execFile);

function findTestssl(): string | undefined {
  for (const name of ['testssl', 'testssl.sh']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
    } catch {}
  }
  return undefined;
}

const TESTSSL = findTestssl();

interface Finding {
  readonly id: string;
  readonly severity: string;
  readonly finding: string;
}

async function testssl(target: string, extra: string[]): Promise<Map<string, Finding>> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-testssl-'));
  try {
    const json = join(dir, 'result.json');
    await run(
      TESTSSL!,
      ['--quiet', '--warnings', 'off', '--color', '0', '-p', '-s', ...extra, '--jsonfile', json, target],
      { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
    ).catch((error: { code?: number; stdout?: string }) => {
      // testssl exits non-zero when it finds something to warn about; the JSON file says what.
      if (typeof error.code !== 'number') throw error;
    });
    const findings = JSON.parse(await readFile(json, 'utf8')) as Finding[];
    return new Map(findings.map((finding) => [finding.id, finding]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function assertModernOnly(findings: Map<string, Finding>, label: string): void {
  const finding = (id: string) => {
    const entry = findings.get(id);
    assert.ok(entry, `${label}: testssl reported no ${id}`);
    return entry.finding;
  };
  for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) {
    assert.match(finding(id), /^not offered/, `${label}: ${id}`);
  }
  for (const id of ['TLS1_2', 'TLS1_3']) assert.match(finding(id), /^offered/, `${label}: ${id}`);
  // NULL, anonymous, EXPORT, LOW (DES, RC2, RC4), 3DES/IDEA and the obsolete CBC suites.
  for (const id of [
    'cipherlist_NULL',
    'cipherlist_aNULL',
    'cipherlist_EXPORT',
    'cipherlist_LOW',
    'cipherlist_3DES_IDEA',
    'cipherlist_AVERAGE',
  ]) {
    assert.match(finding(id), /^not offered/, `${label}: ${id}`);
  }
  assert.match(finding('cipherlist_STRONG'), /^offered/, `${label}: AEAD suites`);
  const bad = [...findings.values()].filter((entry) => /^(HIGH|CRITICAL)$/.test(entry.severity));
  assert.deepEqual(bad, [], `${label}: findings of high severity`);
}

describe('hostile input: TLS configuration (testssl.sh)', {
  skip: TESTSSL ? false : 'testssl not installed (Debian package testssl.sh)',
}, () => {
  const t = useListener();

  it('offers only TLS 1.2 and 1.3 with AEAD suites, on implicit TLS and on STARTTLS', async (c) => {
    const [implicit, starttls] = await Promise.all([
      testssl(`127.0.0.1:${t.listener.port('implicit-tls')}`, []),
      testssl(`127.0.0.1:${t.listener.port('mx')}`, ['-t', 'smtp']),
    ]);
    for (const [label, findings] of [
      ['implicit TLS', implicit],
      ['STARTTLS', starttls],
    ] as const) {
      c.diagnostic(
        `${label}: ${['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3']
          .map((id) => `${id} ${findings.get(id)?.finding}`)
          .join(', ')}`,
      );
      assertModernOnly(findings, label);
    }
  });
});
