import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { renderConfigReference } from '../../dev/config-reference.ts';

it('docs/configuration.md is the reference generated from the config schema (run `npm run docs`)', async () => {
  const committed = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(committed, renderConfigReference());
});

it('gives every field a meaning and marks one-of fields with their forms', () => {
  const rows = renderConfigReference()
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split(/(?<!\\)\|/).map((cell) => cell.trim()));
  const byField = new Map(rows.map(([, field, type, , meaning]) => [field, { type, meaning }]));
  assert.deepEqual(
    rows.filter(([, , , , meaning]) => !meaning).map(([, field]) => field),
    [],
  );
  assert.equal(
    byField.get('`tls`')?.type,
    'one of `{ source: "self-signed" }`, `{ source: "files", certFile, keyFile }`, `{ source: "secrets-manager", secretId, reloadInterval? }`',
  );
  assert.equal(
    byField.get('`routes[].secret`')?.type,
    'one of `{ value }`, `{ env }`, `{ secretsManager, jsonKey? }`, or a list of them',
  );
  assert.equal(rows.filter(([, field]) => field === '`tls.source`').length, 1);
});
