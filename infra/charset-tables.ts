import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * iconv-lite's double-byte charset tables (GBK, Big5, Shift_JIS, EUC-KR…, ≈ 400 KB of the parse
 * bundle) are required only when a message in one of those charsets is decoded. The bundle leaves
 * `require('./tables/<name>.json')` as it is (this esbuild external), and {@link copyCharsetTables}
 * puts the files beside it: in the zip, but not compiled at every cold start.
 */
export const CHARSET_TABLES_EXTERNAL = './tables/*';

const TABLES_DIR = join(
  dirname(createRequire(import.meta.url).resolve('iconv-lite')),
  '..',
  'encodings',
  'tables',
);

/**
 * Copies into `<outDir>/tables/` every charset table the bundle `<outDir>/index.mjs` requires, and
 * returns their names. Throws when the bundle names a table iconv-lite does not have, so a bundle
 * cannot ship without a file it requires.
 */
export function copyCharsetTables(outDir: string): string[] {
  const bundle = readFileSync(join(outDir, 'index.mjs'), 'utf8');
  const names = [
    ...new Set([...bundle.matchAll(/["']\.\/tables\/([\w-]+\.json)["']/g)].map((match) => match[1]!)),
  ];
  if (names.length > 0) mkdirSync(join(outDir, 'tables'), { recursive: true });
  for (const name of names) copyFileSync(join(TABLES_DIR, name), join(outDir, 'tables', name));
  return names;
}
