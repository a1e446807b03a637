/**
 * What goes into the listener image: only the packages the listener imports, at the versions of the
 * repository's package.json, so the image carries no parser, mail client or CDK. The Dockerfile
 * installs `listener/image/package.json` against the repository's lockfile (same resolved versions).
 * `npm run image:manifest` rewrites that file after a change of the listener's imports; a test
 * fails while it is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
/** The entry points the image runs: the listener and its health check. */
const ENTRY_POINTS = ['listener/main.ts', 'listener/healthcheck.ts'];
export const LISTENER_MANIFEST = 'listener/image/package.json';

/**
 * V8 flags of the listener process (the Dockerfile's CMD; a test keeps the two equal). A 1 MiB
 * young generation makes V8 collect the short-lived buffers of streamed mail (socket reads,
 * smtp-server's copies) long before they could be promoted and wait for a full collection: a
 * 50 MB message grew the RSS by 12–19 MiB instead of 54–61 MiB (bench, section 3;
 * docs/performance.md).
 */
export const LISTENER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * The modules outside the repository (npm packages and `node:` builtins, as imported) that the import
 * graph of `entryPoints` (paths from the repository root) reaches, each once.
 */
export async function externalImports(entryPoints: readonly string[]): Promise<string[]> {
  const { metafile } = await build({
    entryPoints: entryPoints.map((entry) => resolve(ROOT, entry)),
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    outdir: 'unused',
    logLevel: 'silent',
  });
  const paths = Object.values(metafile.inputs).flatMap((input) =>
    input.imports.filter((entry) => entry.external).map((entry) => entry.path),
  );
  return [...new Set(paths)];
}

/** The npm packages reachable from the listener's entry points (every file of its import graph). */
export async function listenerPackages(): Promise<string[]> {
  const names = new Set<string>();
  for (const path of await externalImports(ENTRY_POINTS)) {
    if (path.startsWith('node:')) continue;
    const parts = path.split('/');
    names.add(path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
  }
  return [...names].sort();
}

/** The listener's package.json: its packages, pinned as the repository's package.json pins them. */
export async function listenerManifest(): Promise<string> {
  const root = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
  };
  const dependencies: Record<string, string> = {};
  for (const name of await listenerPackages()) {
    const version = root.dependencies[name];
    if (!version) throw new Error(`the listener imports ${name}, which package.json has no dependency on`);
    dependencies[name] = version;
  }
  const manifest = {
    name: 'mailbridge-listener',
    version: root.version,
    private: true,
    type: 'module',
    dependencies,
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

if (import.meta.main) writeFileSync(resolve(ROOT, LISTENER_MANIFEST), await listenerManifest());
