import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { loadDeployment } from '../../infra/index.ts';
import { LISTENER_MANIFEST, LISTENER_V8_FLAGS, listenerManifest } from '../../infra/listener-image.ts';
import { healthCheckCommand } from '../../listener/healthcheck.ts';
import { dockerfileInstructions, EXAMPLE_SETTINGS } from './helpers.ts';

const lines = dockerfileInstructions('listener/Dockerfile');
const finalStage = lines.slice(lines.findLastIndex((line) => line.keyword === 'FROM'));
const args = (keyword: string) =>
  finalStage.filter((line) => line.keyword === keyword).map((line) => line.args);

describe('listener/Dockerfile', () => {
  it('is multi-stage on a Node 24 slim base pinned by digest', () => {
    const image = lines.find((line) => line.keyword === 'ARG' && line.args.startsWith('NODE_IMAGE='));
    assert.match(image?.args ?? '', /^NODE_IMAGE=node:24-bookworm-slim@sha256:[0-9a-f]{64}$/);
    const bases = lines.filter((line) => line.keyword === 'FROM').map((line) => line.args);
    const base = '$' + '{NODE_IMAGE}';
    assert.deepEqual(bases, [`${base} AS deps`, base]);
    assert.ok(
      args('COPY').some((copy) => /--from=deps/.test(copy)),
      'the runtime stage copies node_modules from the first',
    );
  });

  it("installs only the packages the listener imports, at the lockfile's versions", async () => {
    const installs = lines.filter((line) => line.keyword === 'RUN' && /npm /.test(line.args));
    assert.equal(installs.length, 1);
    assert.match(installs[0]!.args, /^npm install --omit=dev /);
    const copies = lines.filter((line) => line.keyword === 'COPY').map((line) => line.args);
    assert.ok(copies.includes(`${LISTENER_MANIFEST} ./package.json`));
    assert.ok(copies.includes('package-lock.json ./'));
    assert.equal(
      readFileSync(LISTENER_MANIFEST, 'utf8'),
      await listenerManifest(),
      `${LISTENER_MANIFEST} is out of date: npm run image:manifest`,
    );
    const packages = Object.keys(JSON.parse(readFileSync(LISTENER_MANIFEST, 'utf8')).dependencies);
    assert.ok(packages.includes('smtp-server'));
    // mailauth (and nodemailer's address parser) are the listener's too: SPF at MAIL FROM and
    // DMARC before the 250 (listener/filtering).
    for (const functionsOnly of ['mailparser', 'request-filtering-agent', 'standardwebhooks'])
      assert.ok(!packages.includes(functionsOnly), `${functionsOnly} is not in the listener image`);
  });

  it('runs as a non-root user', () => {
    const users = args('USER');
    assert.ok(users.length > 0);
    assert.doesNotMatch(users.at(-1)!, /^(root|0)(:|$)/);
  });

  it('runs `node listener/main.ts` (a file in the repository) with the V8 flags the bench measures, and the health check the task definition runs', () => {
    const cmd = JSON.parse(args('CMD').at(-1)!) as string[];
    assert.deepEqual(cmd, ['node', ...LISTENER_V8_FLAGS, 'listener/main.ts']);
    assert.ok(existsSync(cmd.at(-1)!), `${cmd.at(-1)} exists`);
    const healthcheck = args('HEALTHCHECK').at(-1);
    assert.ok(healthcheck, 'HEALTHCHECK');
    const { config } = loadDeployment(EXAMPLE_SETTINGS);
    // The ECS task definition runs the same command (infra/listener-service.ts).
    assert.deepEqual(
      JSON.parse(healthcheck.slice(healthcheck.indexOf('CMD ') + 4)),
      healthCheckCommand(config.health.port),
    );
  });

  it("exposes the example config's container ports, and keeps the build context to what the image needs", () => {
    const { config } = loadDeployment(EXAMPLE_SETTINGS);
    const exposed = args('EXPOSE').flatMap((ports) => ports.split(/\s+/).map(Number));
    assert.deepEqual(
      exposed.sort((a, b) => a - b),
      [...config.listeners.map((listener) => listener.port), config.health.port].sort((a, b) => a - b),
    );
    const ignore = readFileSync('.dockerignore', 'utf8').split('\n');
    assert.equal(
      ignore.find((line) => line && !line.startsWith('#')),
      '**',
      'everything is excluded first',
    );
    for (const kept of ['!package-lock.json', '!core/**', '!listener/**'])
      assert.ok(ignore.includes(kept), kept);
  });
});
