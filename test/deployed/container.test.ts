import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, cpSync, linkSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startTestControlStore, type TestControlStore } from '../../harness/control-store.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { testTls } from '../../harness/listener-config.ts';
import { until } from '../../harness/wait.ts';
import { dockerfileInstructions, tempDir } from '../infra/helpers.ts';
import {
  boundPorts,
  dotStuff,
  EventCollector,
  healthOf,
  makeMessage,
  queuedId,
  RawSmtp,
} from '../listener/helpers.ts';
import {
  type AwsEndpoint,
  emulatorRefs,
  putDeployedConfig,
  resolveEnvironment,
  type SynthesizedApp,
  startAwsEndpoint,
  synthesizeApp,
} from './helpers.ts';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '../..');
// The image's "node" user; only root may start a process as another user.
const IMAGE_UID = 1000;
const asImageUser = process.getuid?.() === 0;

/** The image, built without Docker: each stage a directory, each instruction replayed. */
interface ReplayedImage {
  /** The final stage's working directory. */
  readonly workdir: string;
  readonly env: Record<string, string>;
  readonly user: string | undefined;
  readonly cmd: string[];
  readonly healthcheck: string[];
  readonly stopSignal: string | undefined;
}

/**
 * Replays listener/Dockerfile into `root`: WORKDIR, COPY (also `--from` a stage), RUN (as root,
 * with an npm cache of the stage's own, which the step downloads into and cleans), ENV, USER,
 * HEALTHCHECK, STOPSIGNAL and CMD. An
 * instruction it does not know fails the test, so the replay cannot drift from the Dockerfile.
 */
async function replayDockerfile(root: string): Promise<ReplayedImage> {
  const stages = new Map<string, string>();
  let stage = '';
  let workdir = '';
  let env: Record<string, string> = {};
  const image: { -readonly [K in keyof Omit<ReplayedImage, 'workdir' | 'env'>]: ReplayedImage[K] } = {
    user: undefined,
    cmd: [],
    healthcheck: [],
    stopSignal: undefined,
  };
  const inStage = (path: string) => join(stage, path.startsWith('/') ? path : join(workdir, path));
  for (const { keyword, args } of dockerfileInstructions(join(REPO, 'listener/Dockerfile'))) {
    switch (keyword) {
      case 'ARG':
      case 'EXPOSE':
        break;
      case 'FROM': {
        const [, , name] = args.split(/\s+/);
        stage = join(root, `stage${stages.size}`);
        mkdirSync(stage, { recursive: true });
        stages.set(name ?? 'final', stage);
        workdir = '/';
        env = {};
        break;
      }
      case 'WORKDIR':
        workdir = args;
        mkdirSync(inStage('.'), { recursive: true });
        break;
      case 'COPY': {
        const from = /^--from=(\S+)\s+/.exec(args);
        const [source, target] = (from ? args.slice(from[0].length) : args).split(/\s+/) as [string, string];
        const origin = from ? join(stages.get(from[1]!)!, source) : join(REPO, source);
        const destination =
          target.endsWith('/') && !source.endsWith('/')
            ? join(inStage(target), source.split('/').at(-1)!)
            : inStage(target);
        cpSync(origin, destination, {
          recursive: true,
          filter: (path) => !path.includes('/node_modules/.cache'),
        });
        break;
      }
      case 'RUN':
        // npm's cache, which the step cleans, is the stage's own (in the image: /root/.npm).
        await run('sh', ['-c', args], {
          cwd: inStage('.'),
          env: { ...process.env, ...env, npm_config_cache: join(stage, 'root', '.npm') },
        });
        break;
      case 'ENV': {
        const [name, ...value] = args.split('=');
        env[name!] = value.join('=');
        break;
      }
      case 'USER':
        image.user = args;
        break;
      case 'HEALTHCHECK':
        image.healthcheck = JSON.parse(args.slice(args.indexOf('CMD ') + 4)) as string[];
        break;
      case 'STOPSIGNAL':
        image.stopSignal = args;
        break;
      case 'CMD':
        image.cmd = JSON.parse(args) as string[];
        break;
      default:
        throw new Error(`the replay does not know ${keyword}`);
    }
  }
  return { ...image, workdir: inStage('.'), env };
}

describe('the listener container, as ECS runs it', () => {
  let app: SynthesizedApp;
  let emulator: TestEmulator;
  let aws: AwsEndpoint;
  // The task's MAILBRIDGE_CONTROL_TABLE: the listener loads routes from it before it listens.
  let control: TestControlStore;
  let image: ReplayedImage;
  let bin: string;
  let environment: Record<string, string>;
  let events: EventCollector;
  let dir: string;
  let cleanupDir: () => void;

  before(async () => {
    app = synthesizeApp();
    emulator = await startTestEmulator();
    control = await startTestControlStore();
    aws = await startAwsEndpoint(emulator.emulator.endpoint, { dynamoEndpoint: control.dynamo.endpoint });
    events = new EventCollector(emulator.sqs, emulator.resources.inboundQueueUrl);
    ({ dir, cleanup: cleanupDir } = tempDir('mailbridge-container-'));
    image = await replayDockerfile(join(dir, 'image'));
    // node, reachable by the image's user (the test's own binary may sit in a private home).
    bin = join(dir, 'bin');
    mkdirSync(bin);
    linkSync(process.execPath, join(bin, 'node'));
    for (const path of [dir, join(dir, 'image'), bin]) chmodSync(path, 0o755);
    const tls = await testTls();
    aws.secretsManager.set(
      'mailbridge/tls',
      JSON.stringify({ cert: String(tls.cert), key: String(tls.key) }),
    );
    aws.secretsManager.set('mailbridge/smtp/app', 'app password');
    // The deployed document, bound to loopback and free ports instead of the container's fixed ones.
    const config = JSON.parse(app.configJson) as Record<string, unknown>;
    await putDeployedConfig(
      emulator,
      JSON.stringify({
        ...config,
        listeners: (config.listeners as { mode: string }[]).map(({ mode }) => ({
          host: '127.0.0.1',
          port: 0,
          mode,
        })),
        health: { host: '127.0.0.1', port: 0 },
        domains: ['example.com'],
      }),
    );
    const task = Object.values(app.resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition')!;
    const [container] = task.Properties.ContainerDefinitions as {
      Environment: { Name: string; Value: unknown }[];
    }[];
    environment = resolveEnvironment(
      Object.fromEntries(container!.Environment.map(({ Name, Value }) => [Name, Value])),
      emulatorRefs(app, emulator),
    );
  });
  after(async () => {
    await aws.close();
    await control.close();
    await emulator.close();
    app.cleanup();
    cleanupDir();
  });

  /** Starts the image's CMD in its WORKDIR with its ENV, the task definition's environment and the emulator's endpoint. */
  async function start(): Promise<{
    child: ChildProcess;
    smtpPort: number;
    healthPort: number;
    exit: Promise<number | null>;
  }> {
    const child = spawn(join(bin, image.cmd[0]!), image.cmd.slice(1), {
      cwd: image.workdir,
      env: {
        ...image.env,
        ...environment,
        PATH: bin,
        HOME: '/nonexistent',
        AWS_ENDPOINT_URL: aws.url,
        AWS_ACCESS_KEY_ID: 'container',
        AWS_SECRET_ACCESS_KEY: 'container',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
      ...(asImageUser ? { uid: IMAGE_UID, gid: IMAGE_UID } : {}),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exit = once(child, 'exit').then(([code]) => code as number | null);
    return { child, ...(await boundPorts(child)), exit };
  }

  it('installs only what the listener runs', () => {
    const modules = readdirSync(join(image.workdir, 'node_modules'));
    // mailauth and nodemailer: SPF and DMARC before the 250 (listener/filtering); the rest is the functions'.
    for (const present of ['smtp-server', 'mailauth', 'nodemailer'])
      assert.ok(modules.includes(present), present);
    for (const absent of ['mailparser', 'aws-cdk-lib', 'esbuild'])
      assert.ok(!modules.includes(absent), `${absent} is not installed`);
    assert.equal(image.user, 'node');
    assert.equal(image.stopSignal, 'SIGTERM');
  });

  it('runs as the image user, who cannot write to the application (ECS: read-only root)', {
    skip: !asImageUser && 'needs root to switch user',
  }, async () => {
    const write = run(join(bin, 'node'), ['-e', "require('node:fs').writeFileSync('listener/x', '')"], {
      cwd: image.workdir,
      env: { PATH: bin },
      uid: IMAGE_UID,
      gid: IMAGE_UID,
    });
    await assert.rejects(write, /EACCES/);
  });

  it('serves SMTP and /healthz, passes its HEALTHCHECK, and on SIGTERM finishes the message in flight, then exits 0', async () => {
    const running = await start();
    assert.deepEqual(await healthOf(running.healthPort), { status: 200, body: { status: 'ok' } });
    // The HEALTHCHECK command, with the health port this run bound instead of the image's fixed one.
    const [command, ...args] = image.healthcheck;
    await run(join(bin, command!), [...args.slice(0, -1), String(running.healthPort)], {
      cwd: image.workdir,
      env: { PATH: bin },
      ...(asImageUser ? { uid: IMAGE_UID, gid: IMAGE_UID } : {}),
    });

    const client = await RawSmtp.open(running.smtpPort);
    await client.startData('container@sender.example', 'support@example.com');
    const stuffed = dotStuff(makeMessage(256 * 1024, 'container', 'support@example.com'));
    client.write(stuffed.subarray(0, 64 * 1024));
    running.child.kill('SIGTERM');
    await until('health draining', async () => (await healthOf(running.healthPort)).status === 503);
    client.write(stuffed.subarray(64 * 1024));
    client.write('.\r\n');
    const event = await events.get(queuedId(await client.reply(15_000)));
    assert.deepEqual(event.envelope.rcptTo, ['support@example.com']);
    client.close();
    assert.equal(await running.exit, 0);
  });
});
