import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { renderConfigReference } from '../../dev/config-reference.ts';

it('docs/configuration.md is the reference generated from the config schema (run `npm run docs`)', async () => {
  const committed = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(committed, renderConfigReference());
});
