import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { type Deployment, loadDeployment, MailbridgeStack } from '../../infra/index.ts';

export const EXAMPLE_SETTINGS = 'infra/example/settings.json';
export const EXAMPLE_CONFIG = 'infra/example/mailbridge.yaml';

/** The feature flags of cdk.json, so the in-process app synthesizes what `npx cdk synth` does. */
export function cdkContext(): Record<string, unknown> {
  return (JSON.parse(readFileSync('cdk.json', 'utf8')) as { context: Record<string, unknown> }).context;
}

/** A throwaway directory, removed by `cleanup`. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The real stack built from a deployment, in an app with cdk.json's context and a throwaway output
 * dir. `bundle: false` skips bundling the functions (CDK's `aws:cdk:bundling-stacks`), for tests
 * that look only at the template: a synth then takes a fraction of a second.
 */
export function buildStack(
  deployment: Deployment = loadDeployment(EXAMPLE_SETTINGS),
  options: { bundle?: boolean } = {},
): {
  app: App;
  stack: MailbridgeStack;
  cleanup: () => void;
} {
  const { dir, cleanup } = tempDir('mailbridge-cdk-');
  const context = { ...cdkContext(), ...(options.bundle === false ? { 'aws:cdk:bundling-stacks': [] } : {}) };
  const app = new App({ outdir: dir, context });
  const stack = new MailbridgeStack(app, 'Mailbridge', { deployment });
  return { app, stack, cleanup };
}

/** Writes a settings file (pointing at `config.yaml`) and the config text into `dir`; returns the settings path. */
export function writeDeployment(dir: string, settings: Record<string, unknown>, configText: string): string {
  writeFileSync(join(dir, 'config.yaml'), configText);
  const settingsPath = join(dir, 'settings.json');
  writeFileSync(settingsPath, JSON.stringify({ config: 'config.yaml', ...settings }));
  return settingsPath;
}

/** A Dockerfile's instructions, continuation lines joined, comments dropped. */
export function dockerfileInstructions(path: string): { keyword: string; args: string }[] {
  return readFileSync(path, 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}
