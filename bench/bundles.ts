import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { ENV } from '../core/index.ts';
import { addBundleCompanions } from '../infra/bundle-companions.ts';
import { FUNCTION_BUNDLING, FUNCTION_NAMES, FUNCTION_NODE_OPTIONS } from '../infra/index.ts';
import { median } from './stats.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** One function bundled as CDK bundles it, and how long a fresh process takes to import it. */
export interface BundleResult {
  readonly name: string;
  /** What a cold start reads: the bundle, and any file of the asset directory it requires during the import. */
  readonly bytes: number;
  /** Every file of the asset directory, i.e. what the function's zip holds (the bundle and the charset tables). */
  readonly assetBytes: number;
  /** Median of the cold imports, ms. */
  readonly coldImportMs: number;
  readonly coldImportsMs: number[];
  /** Median time to format the first error's stack after the import, ms (with source maps on, the map is parsed then). */
  readonly firstStackMs: number;
  /** The largest inputs of the bundle, bytes after minification. */
  readonly heaviest: { readonly path: string; readonly bytes: number }[];
}

// What the handlers read at import: the local runtime's config and resource names, no network.
const IMPORT_ENV = {
  [ENV.runtime]: 'local',
  [ENV.config]: join(ROOT, 'dev', 'mailbridge.yaml'),
  [ENV.bucket]: 'mailbridge-local',
  [ENV.inboundQueueUrl]: 'http://127.0.0.1:9/000000000000/mailbridge-inbound',
  [ENV.deliveryQueueUrl]: 'http://127.0.0.1:9/000000000000/mailbridge-delivery',
  [ENV.deliveryDlqUrl]: 'http://127.0.0.1:9/000000000000/mailbridge-delivery-dlq',
  [ENV.inboundDlqUrl]: 'http://127.0.0.1:9/000000000000/mailbridge-inbound-dlq',
  // The control store is built at import too; nothing reaches its table without an event.
  [ENV.controlTable]: 'mailbridge-control',
  [ENV.controlRetentionDays]: '30',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
};

function heaviest(metafile: Metafile): { path: string; bytes: number }[] {
  const output = Object.values(metafile.outputs).find((entry) => entry.entryPoint);
  const byPackage = new Map<string, number>();
  for (const [path, input] of Object.entries(output?.inputs ?? {})) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
    const name = match?.[1] ?? path.split('/').slice(0, 2).join('/');
    byPackage.set(name, (byPackage.get(name) ?? 0) + input.bytesInOutput);
  }
  return [...byPackage]
    .map(([path, bytes]) => ({ path, bytes }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, 6);
}

/**
 * The reference bundled beside the functions: a handler that only builds the S3 and SQS clients,
 * the least any queue-triggered function here loads. Its cold import is the machine's floor.
 */
export const REFERENCE_BUNDLE = 'reference (S3 + SQS clients only)';
const REFERENCE_SOURCE = `import { S3Client } from '@aws-sdk/client-s3'; import { SQSClient } from '@aws-sdk/client-sqs';
const s3 = new S3Client({}); const sqs = new SQSClient({});
export const handler = async (event) => { if (!event) throw new Error('no event'); return [s3, sqs]; };`;

/** Bundles each function with the esbuild options of infra (see `FUNCTION_BUNDLING`), then imports it `imports` times. */
export async function measureBundles(imports: number): Promise<BundleResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mailbridge-bundle-'));
  try {
    const bundles = [];
    for (const name of [REFERENCE_BUNDLE, ...FUNCTION_NAMES]) {
      const outfile = join(dir, name === REFERENCE_BUNDLE ? 'reference' : name, 'index.mjs');
      const { metafile } = await build({
        ...(name === REFERENCE_BUNDLE
          ? { stdin: { contents: REFERENCE_SOURCE, resolveDir: ROOT, loader: 'js' as const } }
          : { entryPoints: [join(ROOT, 'functions', name, 'handler.ts')] }),
        outfile,
        bundle: true,
        platform: 'node',
        format: FUNCTION_BUNDLING.format,
        target: FUNCTION_BUNDLING.target,
        mainFields: FUNCTION_BUNDLING.mainFields,
        minify: FUNCTION_BUNDLING.minify,
        sourcemap: FUNCTION_BUNDLING.sourceMap,
        keepNames: FUNCTION_BUNDLING.keepNames,
        external: FUNCTION_BUNDLING.externalModules,
        banner: { js: FUNCTION_BUNDLING.banner },
        alias: Object.fromEntries(
          Object.entries(FUNCTION_BUNDLING.esbuildArgs)
            .filter(([flag]) => flag.startsWith('--alias:'))
            .map(([flag, path]) => [flag.slice('--alias:'.length), path]),
        ),
        absWorkingDir: ROOT,
        metafile: true,
        logLevel: 'silent',
      });
      const assetDir = dirname(outfile);
      // As CDK's afterBundling hook does.
      if (name !== REFERENCE_BUNDLE) addBundleCompanions(assetDir);
      // The first logged error formats a stack through the bundle (here: the handler given no event);
      // with --enable-source-maps that decodes the whole map. The files of the asset directory the
      // import required (charset tables) are what the cold start read beside the bundle.
      const script = `import { createRequire } from 'node:module'; let t = performance.now(); const fn = await import(${JSON.stringify(outfile)}); const imported = performance.now() - t; const read = Object.keys(createRequire(import.meta.url).cache).filter((file) => file.startsWith(${JSON.stringify(`${assetDir}/`)})); let error; try { await fn.handler(null, {}); } catch (caught) { error = caught; } t = performance.now(); error.stack; process.stdout.write(JSON.stringify([imported, performance.now() - t, read]));`;
      bundles.push({ name, outfile, assetDir, script, metafile });
    }
    // Round by round, each bundle in turn, so a change in the machine's load weighs on all alike.
    const runs = bundles.map(() => [] as [number, number, string[]][]);
    for (let round = 0; round < imports; round++) {
      bundles.forEach(({ script }, index) => {
        runs[index]!.push(
          JSON.parse(
            execFileSync(process.execPath, ['--input-type=module', '-e', script], {
              // As the function runs: its NODE_OPTIONS, as infra/functions.ts sets them.
              env: { PATH: process.env.PATH ?? '', ...IMPORT_ENV, NODE_OPTIONS: FUNCTION_NODE_OPTIONS },
              cwd: dir,
              stdio: ['ignore', 'pipe', 'ignore'],
            }).toString(),
          ),
        );
      });
    }
    const size = (files: Iterable<string>) => [...files].reduce((sum, file) => sum + statSync(file).size, 0);
    return bundles.map(({ name, outfile, assetDir, metafile }, index) => {
      const imported = runs[index]!;
      const assetFiles = readdirSync(assetDir, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => join(entry.parentPath, entry.name));
      return {
        name,
        bytes: size(new Set([outfile, ...imported.flatMap(([, , read]) => read)])),
        assetBytes: size(assetFiles),
        coldImportMs: median(imported.map(([ms]) => ms)),
        coldImportsMs: imported.map(([ms]) => ms),
        firstStackMs: median(imported.map(([, stack]) => stack)),
        heaviest: heaviest(metafile),
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
