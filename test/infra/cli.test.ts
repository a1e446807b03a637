import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tempDir } from './helpers.ts';

const run = promisify(execFile);

describe('npx cdk synth', () => {
  it('synthesizes the app from a clone with no Docker and no AWS credentials, cdk-nag included', async () => {
    const { dir, cleanup } = tempDir('mailbridge-cdk-cli-');
    try {
      const env: NodeJS.ProcessEnv = {
        PATH: process.env.PATH,
        HOME: dir,
        // Any attempt to run Docker fails: bundling and image staging must not need it.
        CDK_DOCKER: join(dir, 'no-docker'),
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_EC2_METADATA_DISABLED: 'true',
        CDK_DISABLE_VERSION_CHECK: '1',
      };
      // The app registers cdk-nag's AwsSolutions pack: an unacknowledged finding would fail this synth.
      await run(
        process.execPath,
        [
          'node_modules/aws-cdk/bin/cdk',
          'synth',
          '--quiet',
          '--no-notices',
          '-c',
          'settings=infra/example/settings.json',
          '-o',
          dir,
        ],
        {
          env,
          timeout: 120_000,
        },
      );
      const template = JSON.parse(readFileSync(join(dir, 'Mailbridge.template.json'), 'utf8'));
      assert.ok(Object.keys(template.Resources).length > 50);
      const assets = JSON.parse(readFileSync(join(dir, 'Mailbridge.assets.json'), 'utf8'));
      const images = Object.values(assets.dockerImages) as {
        source: { dockerFile: string; platform: string; directory: string };
      }[];
      assert.equal(images.length, 1);
      assert.equal(images[0]!.source.dockerFile, 'listener/Dockerfile');
      assert.equal(images[0]!.source.platform, 'linux/arm64');
      assert.ok(
        existsSync(join(dir, images[0]!.source.directory, 'listener', 'main.ts')),
        'the staged context holds the listener',
      );
      assert.equal(
        existsSync(join(dir, images[0]!.source.directory, 'node_modules')),
        false,
        'but not node_modules',
      );
    } finally {
      cleanup();
    }
  });
});
