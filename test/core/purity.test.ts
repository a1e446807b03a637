import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { externalImports } from '../../infra/listener-image.ts';

const CORE = resolve(import.meta.dirname, '../../core');

/** AWS SDK clients, sockets, HTTP, DNS and the file system: I/O that belongs to the adapters. */
const IO_MODULE = /^(?:@aws-sdk\/.*|(?:node:)?(?:net|tls|http|https|http2|dns|fs)(?:\/.*)?)$/;

/** The module specifiers a file imports or re-exports, statically or dynamically. */
function importsOf(source: string): string[] {
  const specifiers = [
    ...source.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm),
    ...source.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
    ...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ];
  return specifiers.map((match) => match[1]!);
}

describe('the pure core', () => {
  it('top-level files of core/ import no AWS SDK, socket, HTTP, DNS or fs module', async () => {
    const files = (await readdir(CORE, { withFileTypes: true }))
      .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
      .map((entry) => entry.name);
    assert.ok(files.includes('config.ts') && files.includes('index.ts'), 'the scan reads core/');
    const found = [];
    for (const file of files) {
      const imports = importsOf(await readFile(join(CORE, file), 'utf8'));
      found.push(...imports.filter((specifier) => IO_MODULE.test(specifier)).map((m) => `${file}: ${m}`));
    }
    assert.deepEqual(found, []);
  });

  // core/filtering matches senders with node:net's BlockList, an in-memory matcher: the whole graph
  // is held to the SDK rule only.
  it('importing core/index.ts loads no AWS SDK package', async () => {
    const loaded = await externalImports(['core/index.ts']);
    assert.ok(loaded.includes('zod'), 'the graph lists the packages core loads');
    assert.deepEqual(
      loaded.filter((path) => path.startsWith('@aws-sdk/')),
      [],
    );
  });

  it('the scan recognises each way of importing', () => {
    assert.deepEqual(
      importsOf(
        [
          "import { readFile } from 'node:fs/promises';",
          "import type { S3Client } from '@aws-sdk/client-s3';",
          "export { x } from './aws/index.ts';",
          "import 'node:net';",
          "const tls = await import('node:tls');",
          'import {\n  a,\n  b,\n} from "node:dns";',
        ].join('\n'),
      ),
      ['node:fs/promises', '@aws-sdk/client-s3', './aws/index.ts', 'node:dns', 'node:net', 'node:tls'],
    );
  });
});
