import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { copyCharsetTables } from './charset-tables.ts';

const REPO_ROOT = resolve(import.meta.dirname, '..');

/** CommonJS dependencies (mailparser, mailauth, msgreader) call require() and read __dirname inside an ESM bundle. */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __mbCreateRequire } from 'node:module'; import { fileURLToPath as __mbFileURLToPath } from 'node:url'; import { dirname as __mbDirname } from 'node:path'; const require = __mbCreateRequire(import.meta.url); const __filename = __mbFileURLToPath(import.meta.url); const __dirname = __mbDirname(__filename);";

/** The Outlook `.msg` reader's worker (functions/parse/containers.ts starts it from a file beside the bundle). */
const UNPACK_WORKER = 'unpack-worker.mjs';

/**
 * Puts beside `<outDir>/index.mjs` the files it loads at run time rather than imports: the charset
 * tables it requires (charset-tables.ts) and, when it starts the unpack worker, the worker bundled
 * on its own (a worker thread runs a file, not a module of the bundle). Returns what it added.
 */
export function addBundleCompanions(outDir: string): string[] {
  const added = copyCharsetTables(outDir).map((name) => `tables/${name}`);
  if (readFileSync(join(outDir, 'index.mjs'), 'utf8').includes(UNPACK_WORKER)) {
    buildSync({
      entryPoints: [join(REPO_ROOT, 'functions', 'parse', 'unpack-worker.ts')],
      outfile: join(outDir, UNPACK_WORKER),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      minify: true,
      banner: { js: ESM_REQUIRE_BANNER },
      logLevel: 'error',
    });
    added.push(UNPACK_WORKER);
  }
  return added;
}

// Run by CDK after esbuild (the bundling's afterBundling hook): node infra/bundle-companions.ts <outputDir>
if (import.meta.main) addBundleCompanions(process.argv[2]!);
