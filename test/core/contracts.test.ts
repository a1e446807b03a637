import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ENV } from '../../core/index.ts';

const ROOT = resolve(import.meta.dirname, '../..');
/** The folders whose code reads or sets the deployment's environment. */
const SOURCE_FOLDERS = ['core', 'listener', 'functions', 'infra', 'cli', 'dev', 'bench'];

async function sourceFiles(folder: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, folder), { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && /\.(?:ts|js)$/.test(entry.name))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)));
}

describe('contracts between folders', () => {
  it('the environment variable names are spelled in core/env.ts only', async () => {
    const names = new Set<string>(Object.values(ENV));
    const spelled: string[] = [];
    for (const file of (await Promise.all(SOURCE_FOLDERS.map(sourceFiles))).flat()) {
      if (file === join('core', 'env.ts')) continue;
      const text = await readFile(join(ROOT, file), 'utf8');
      // A quoted literal, or an object key (`MAILBRIDGE_BUCKET: …` in an env record).
      for (const [, quoted, key] of text.matchAll(
        /['"](MAILBRIDGE_[A-Z0-9_]+)['"]|^\s*(MAILBRIDGE_[A-Z0-9_]+)\s*:/gm,
      )) {
        const name = quoted ?? key!;
        if (names.has(name)) spelled.push(`${file}: ${name}`);
      }
    }
    assert.ok(names.has('MAILBRIDGE_CONFIG'));
    assert.deepEqual(spelled, [], 'use ENV.<name> from core/env.ts');
  });
});
